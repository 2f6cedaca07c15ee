"""Moved to :mod:`stbench.errors`, which every layer imports; kept so that adapters written
against ``stbench.benchmark.errors`` keep working."""

from stbench.errors import *  # noqa: F401,F403
from stbench.errors import __all__  # noqa: F401
