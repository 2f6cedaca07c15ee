"""stbench: a benchmark suite with a leaderboard for spatial transcriptomics methods.

The repository's top-level folders are this package's subpackages:
``stbench.datasets`` (registry, simulator, loaders), ``stbench.tasks`` (splits,
input views, output contracts, metrics), ``stbench.methods`` (adapters),
``stbench.benchmark`` (runner and CLI) and ``stbench.leaderboard``.
"""

__version__ = "0.1.0"
