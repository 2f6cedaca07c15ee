"""Pinned metric definitions (SPEC §4).

Each metric is a plain function registered with :func:`metric`, which records
its direction and range; the docstring carries the formula. Tasks pick metrics
from here, so the same definition serves every task that reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    range: tuple[float, float]
    fn: Callable
    description: str = ""  # the first line of the function's docstring: the formula in one line

    def declaration(self) -> dict:
        """Plain data for the catalog, so that the leaderboard never imports this module."""
        return {"name": self.name, "higher_is_better": self.higher_is_better,
                "range": [float(v) for v in self.range], "description": self.description}


METRICS: dict[str, MetricInfo] = {}


def metric(name: str, higher_is_better: bool, range: tuple[float, float]):
    """Register a metric function under ``name`` with its direction and range."""

    def wrap(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        METRICS[name] = MetricInfo(name, higher_is_better, range, fn, doc[0].strip() if doc else "")
        fn.metric_info = METRICS[name]
        return fn

    return wrap


def _discover() -> None:
    """Import every module of this package: a new metric module is found, not listed."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()
