"""Tasks: one module per task, each exposing ``task`` (a :class:`~stbench.tasks.base.Task`).

A new task is one new module here; it is found by scanning the package.
"""

from __future__ import annotations

import importlib
import pkgutil

from stbench.errors import UnknownNameError
from stbench.tasks.base import Problem, Task  # noqa: F401

TASKS: dict[str, Task] = {}

# Canonical order (the order of SPEC §3); modules found beyond these follow alphabetically.
_ORDER = ["spatial_imputation", "gene_imputation", "denoising", "domain_identification",
          "multislice_integration", "alignment"]


def _discover() -> None:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in {"base", "metrics"}:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        task = getattr(module, "task", None)
        if isinstance(task, Task):
            found[task.name] = task
    for name in _ORDER + sorted(set(found) - set(_ORDER)):
        if name in found:
            TASKS[name] = found[name]


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownNameError("task", name, TASKS) from None


_discover()
# The classes a cell may rebuild from its input file (benchmark.exchange rebuilds no other class).
INPUT_VIEWS: tuple[type, ...] = tuple(t.input_view for t in TASKS.values())
