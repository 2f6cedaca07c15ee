"""Planning a run: which cells there are, and the key that says whether one is already done.

A *cell* is (task, split, dataset, instance, method, seed). ``plan_cells`` lists
every applicable cell of a selection in a stable order; ``cell_key`` hashes what
would change a cell's result (dataset and split hashes, task version, method
name, version and parameters, seed) and nothing else, so a result is re-used
exactly when it would be reproduced.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass

from stbench.manifest import load as load_manifest, method_metadata
from stbench.errors import StbenchError, UnknownNameError
from stbench.tasks import get_task

ID_COLUMNS = ["run_id", "task", "split", "dataset", "instance", "method", "seed"]
# Seconds a cell may run before it is killed, by method kind (``--timeout`` overrides).
DEFAULT_TIMEOUT_S = {"control": 15 * 60, "baseline": 60 * 60, "seed": 6 * 60 * 60, "peer": 6 * 60 * 60}


@dataclass(frozen=True, eq=False)
class MethodInfo:
    """What the runner knows of a method: its metadata, never its code. Built from the manifest
    (built-in adapters), from a sandboxed child's report (entry-point plugins), or from a Method
    object the caller has already imported (``of``); ``ref`` is how a cell finds the code."""

    name: str
    kind: str
    version: str
    tasks: tuple[str, ...]
    params: dict
    splits: dict  # task -> the only splits it runs on (absent: every split)
    gpu: bool
    uses_truth: bool
    uses_true_k: bool
    metadata: dict
    ref: str

    @classmethod
    def from_metadata(cls, name: str, meta: dict, ref: str | None = None) -> "MethodInfo":
        return cls(name=name, kind=meta["kind"], version=str(meta["version"]), tasks=tuple(meta["tasks"]),
                   params=dict(meta.get("params", {})), splits={t: tuple(v) for t, v in meta.get("splits", {}).items()},
                   gpu=bool(meta.get("gpu")), uses_truth=bool(meta.get("uses_truth")),
                   uses_true_k=bool(meta.get("uses_true_k")), metadata=dict(meta), ref=ref or name)

    @classmethod
    def of(cls, method) -> "MethodInfo":
        """A Method object the caller imported (a test's fault adapter, a method in a file)."""
        return cls.from_metadata(method.name, method.metadata(), method_reference(method))

    def skip_reason(self, task: str, split: str) -> str:
        """Why this method does not run a split of a task, from its declaration ("" if it does)."""
        allowed = self.splits.get(task)
        if allowed is not None and split not in allowed:
            return f"{self.name} declares that it runs {task} only on {', '.join(allowed)}"
        return ""


def method_info(method) -> MethodInfo:
    """A name (from the manifest, or a plugin's sandboxed report) or an imported Method object."""
    if isinstance(method, MethodInfo):
        return method
    if isinstance(method, str):
        return MethodInfo.from_metadata(method, method_metadata(method))
    return MethodInfo.of(method)


@dataclass(frozen=True)
class Cell:
    task: str
    split: str
    dataset: str
    instance: str
    method: str
    seed: int
    skip: str = ""  # the method's declaration says it does not run this split: recorded skipped, never run

    @property
    def problem_key(self) -> tuple:
        return (self.task, self.dataset, self.instance, self.split, self.seed)

    def label(self) -> str:
        return f"{self.task}/{self.split} {self.dataset}:{self.instance} {self.method} s{self.seed}"


def default_methods() -> list[str]:
    return [n for n, m in load_manifest()["methods"].items() if m["kind"] in ("control", "baseline")]


def plan_cells(tasks, methods, datasets: dict[str, object], seeds, splits=None, instances=None) -> list[Cell]:
    """Every applicable cell, in a stable order (task, dataset, instance, split, seed, method).

    ``instances`` keeps only those slices (or pairs, groups) of the datasets.
    """
    for s in splits or []:
        if not any(s in get_task(t).splits for t in tasks):
            raise UnknownNameError("split", s, {x for t in tasks for x in get_task(t).splits})
    for i in instances or []:
        known = {x for t in tasks for spec in datasets.values() for x in get_task(t).instances(spec)}
        if i not in known:
            raise UnknownNameError("instance", i, known)
    methods = [method_info(m) for m in methods]
    cells = []
    for t in tasks:
        task = get_task(t)
        for ds_name, spec in datasets.items():
            for instance in task.instances(spec):
                if instances and instance not in instances:
                    continue
                for split in task.splits:
                    if (splits and split not in splits) or not task.applies(spec, split):
                        continue
                    for seed in seeds:
                        for m in methods:
                            if t in m.tasks:
                                cells.append(Cell(t, split, ds_name, instance, m.name, int(seed),
                                                  m.skip_reason(t, split)))
    return cells


def cell_key(cell: Cell, dataset_sha256: str, split_sha256: str, method: MethodInfo, params: dict) -> str:
    """The cache key of a cell (SPEC §6.2): what would change its result, and nothing else."""
    payload = {"dataset": cell.dataset, "dataset_sha256": dataset_sha256, "task": cell.task,
               "task_version": get_task(cell.task).version, "split": cell.split, "instance": cell.instance,
               "split_sha256": split_sha256, "method": method.name, "method_version": method.version,
               "params": params, "seed": cell.seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def method_reference(method) -> str:
    """How a child finds an imported Method object: its registered name when the registry holds
    this very object, else ``file.py:attribute`` (the fault-injection adapters of the tests)."""
    registry = sys.modules.get("stbench.methods")  # imported by the caller, never by the runner
    if registry is not None and registry.METHODS.get(method.name) is method:
        return method.name
    for fn in method.solvers.values():
        module = sys.modules.get(fn.__module__)
        for attr, value in vars(module or object()).items():
            if value is method and getattr(module, "__file__", None):
                return f"{module.__file__}:{attr}"
    raise StbenchError(f"method {method.name!r} is neither registered nor a module-level object; "
                       "Expected: register it (entry point stbench.methods) or define it at module level")


def parse_memory(text: str | int | None) -> int:
    """``8G``, ``500M``, ``2048K`` or bytes -> bytes."""
    if text is None or isinstance(text, int):
        return int(text or 0)
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(float(t))
    except ValueError:
        raise StbenchError(f"--memory {text!r} is not a size. Expected e.g. 8G, 500M or a number of bytes") from None


def default_memory(jobs: int) -> int:
    import psutil

    return int(0.8 * psutil.virtual_memory().total / max(1, jobs))
