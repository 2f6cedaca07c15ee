"""Methods: one module per adapter. A module builds a :class:`Method` and marks
the function that solves each task with ``@method.solves("task")``.

Adapters outside this repository register through the entry-point group
``stbench.methods`` (the entry point names a module or a Method object), so a
new method is one file and one line in its own ``pyproject.toml``::

    [project.entry-points."stbench.methods"]
    mymethod = "mypackage.mymethod"
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from stbench.errors import MethodNotApplicable, StbenchError, UnknownNameError

KINDS = ("control", "baseline", "seed", "peer")


@dataclass
class RunContext:
    """What a method gets besides the input view."""

    seed: int
    device: str  # "cuda" when a GPU is present and the method can use it, else "cpu"
    scratch_dir: Path
    params: dict
    task: str
    split: str
    # Only for methods marked uses_truth (positive controls): the task's solution.
    solution: Any = None


@dataclass
class Method:
    """An adapter's metadata (SPEC §5.1) and its per-task solver functions."""

    name: str
    kind: str
    summary: str
    version: str = "1"
    label: str | None = None
    paper: str = ""
    paper_url: str = ""
    code_url: str = ""
    gpu: bool = False
    uses_truth: bool = False  # positive controls: the one place truth is given on purpose
    uses_true_k: bool = False  # uses the number of domains the task provides
    params: dict = field(default_factory=dict)  # defaults; a run may override them
    # parameters for a seconds-long run on a tiny problem (tests/test_conformance.py): two epochs, say
    smoke: dict = field(default_factory=dict)
    # task -> the only splits it runs on (default: every split of the task). Declared, so the runner
    # decides a skip before it runs anything; a method that refuses at run time has failed
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deviations: str = ""
    solvers: dict[str, Callable] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        self.label = self.label or self.name.replace("_", " ")

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.solvers)

    def metadata(self) -> dict:
        """What the leaderboard shows about this method (everything but the solver functions)."""
        return {"label": self.label, "kind": self.kind, "version": self.version, "summary": self.summary,
                "paper": self.paper, "paper_url": self.paper_url, "code_url": self.code_url, "gpu": self.gpu,
                "uses_truth": self.uses_truth, "uses_true_k": self.uses_true_k, "params": dict(self.params),
                "deviations": self.deviations, "tasks": list(self.tasks),
                "splits": {t: list(v) for t, v in self.splits.items()}}

    def solves(self, *task_names: str):
        """Decorator: ``fn(inputs, ctx) -> output`` solves these tasks."""

        def wrap(fn):
            for t in task_names:
                self.solvers[t] = fn
            return fn

        return wrap

    def run(self, task_name: str, inputs, ctx: RunContext):
        if task_name not in self.solvers:
            raise MethodNotApplicable(f"method {self.name!r} does not solve task {task_name!r} "
                                      f"(it solves {', '.join(self.tasks)})")
        return self.solvers[task_name](inputs, ctx)


def deviations_section(doc: str, until: str | None = None) -> str:
    """The text after a module docstring's ``Deviations (from ...):`` heading (up to ``until``):
    an adapter states its deviations once, in its docstring, and the board shows that text."""
    import re

    found = re.search(r"^Deviations \(.*?\):[ \t]*\n", doc or "", flags=re.M | re.S)
    if found is None:
        raise ValueError("no 'Deviations (from ...):' heading in the docstring")
    text = doc[found.end():]
    return (text.split(until)[0] if until else text).strip()


def resolve_profile(method_name: str, profiles: dict, params: dict) -> dict:
    """A method's named settings profile (``params["profile"]``, e.g. ``fast`` or ``paper``),
    with any non-None per-run parameter of the same key overriding it."""
    name = params.get("profile", "fast")
    if name not in profiles:
        raise ValueError(f"{method_name}: profile must be one of {sorted(profiles)}, got {name!r}")
    return {**profiles[name], **{k: v for k, v in params.items() if k in profiles[name] and v is not None}}


METHODS: dict[str, Method] = {}
# adapters whose import failed: name -> the reason (the other methods, and every command, still work)
UNAVAILABLE: dict[str, str] = {}


def register(method: Method) -> Method:
    if method.name in METHODS and METHODS[method.name] is not method:
        raise ValueError(f"method {method.name!r} is registered twice")
    METHODS[method.name] = method
    return method


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".strip()


def _discover() -> None:
    """Import every adapter module here. One that fails to import is recorded in UNAVAILABLE
    with its reason instead of breaking every command."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as err:  # noqa: BLE001 - a broken adapter is reported, not fatal
            UNAVAILABLE[info.name] = _reason(err)
            continue
        for obj in vars(module).values():
            if isinstance(obj, Method):
                register(obj)


_plugins_loaded = False


def discover_plugins() -> None:
    """Import every ``stbench.methods`` entry point (third-party adapters). Only a sandboxed
    process does this: a cell, or the child that reads their metadata (``manifest.plugin_methods``);
    never the runner, which holds the solutions, nor the fork server every cell is forked from."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="stbench.methods"):
        try:
            obj = ep.load()
            objs = [obj] if isinstance(obj, Method) else [v for v in vars(obj).values() if isinstance(v, Method)]
            if not objs:
                raise TypeError(f"entry point {ep.value!r} holds no stbench Method")
            for m in objs:
                register(m)
        except Exception as err:  # noqa: BLE001
            UNAVAILABLE[ep.name] = _reason(err)


def get_method(name: str) -> Method:
    if name not in METHODS and name not in UNAVAILABLE:
        discover_plugins()
    if name in METHODS:
        return METHODS[name]
    if name in UNAVAILABLE:
        raise StbenchError(f"method {name!r} is unavailable: its adapter failed to import "
                           f"({UNAVAILABLE[name]}). Expected: an adapter that imports; fix or uninstall it")
    raise UnknownNameError("method", name, METHODS)


_discover()
