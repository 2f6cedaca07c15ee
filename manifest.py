"""What is registered, readable without importing it: the method and task manifest.

``stbench list``, name and parameter checks, ``stbench compare`` and the
leaderboard need a method's metadata (kind, tasks, parameters and their
defaults) and a task's declaration, not its code. Importing every adapter to
read them takes seconds and pulls in torch; a third party's adapter would
also run its module code in the process that holds the problems' solutions.
So the built-in methods' metadata and the tasks' declarations are written
once into ``manifest.json`` beside this module (``python -m stbench.manifest
--write`` after changing an adapter or a task; a test fails while the file
and the code disagree), and read from there.

Adapters installed through the ``stbench.methods`` entry point are not in the
file: their metadata is read in a child process that sandboxes itself first (the
same restrictions as a cell: no data, no results, no network, no signals) and
reports plain JSON, so the asking process never runs their code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

from stbench.errors import StbenchError, UnknownNameError

MANIFEST = Path(__file__).with_name("manifest.json")
PLUGIN_GROUP = "stbench.methods"


@lru_cache(maxsize=1)
def load() -> dict:
    """{"methods": {name: metadata}, "tasks": {name: declaration}} of the built-in registry."""
    return json.loads(MANIFEST.read_text())


def build() -> dict:
    """The manifest as the code says it is today (imports every built-in adapter and task)."""
    from stbench.methods import METHODS
    from stbench.tasks import TASKS

    builtin = {n: m for n, m in METHODS.items()
               if all(fn.__module__.startswith("stbench.methods.") for fn in m.solvers.values())}
    tasks = {}
    for name, task in TASKS.items():
        tasks[name] = {**task.declaration(), "datasets": list(task.DATASETS)}
    return {"methods": {n: builtin[n].metadata() for n in sorted(builtin)}, "tasks": tasks}


def write() -> Path:
    MANIFEST.write_text(json.dumps(build(), indent=1, sort_keys=False, default=str) + "\n")
    load.cache_clear()
    return MANIFEST


# The discovery child: sandbox itself (sandbox.py), then import the plugins and print their metadata.
_DISCOVERY = """
import json, sys
from stbench import sandbox
scratch = sys.argv[1]
sandbox.enter_namespaces()
sandbox.restrict_writes([scratch, *sandbox.device_paths()], sandbox.readable_paths([scratch]))
from stbench.methods import METHODS, UNAVAILABLE, discover_plugins
from stbench import manifest
discover_plugins()
builtin = manifest.load()['methods']
out = {n: m.metadata() for n, m in METHODS.items() if n not in builtin}
out.update({n: {'unavailable': why, 'kind': 'unavailable', 'version': '', 'tasks': [], 'params': {},
                'summary': 'unavailable: ' + why} for n, why in UNAVAILABLE.items()})
sys.stdout.write("\\n" + MARK + json.dumps(out, default=str) + "\\n")
"""
MARK = "stbench-plugin-metadata:"
PLUGIN_KINDS = ("baseline", "seed", "peer")  # a plugin is never a control: it never receives the truth


@lru_cache(maxsize=1)
def plugin_methods() -> dict:
    """Metadata of the adapters installed through the entry point, read in a child process
    (nothing of theirs runs here); {} when none is installed. One whose import fails is listed
    with ``unavailable`` (the reason) and kind "unavailable"."""
    if not list(entry_points(group=PLUGIN_GROUP)):
        return {}
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="stbench-discover-") as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STBENCH_", "MLFLOW_", "RAY_ADDRESS"))}
        out = subprocess.run([sys.executable, "-c", f"MARK = {MARK!r}\n" + _DISCOVERY, scratch],
                             capture_output=True, text=True, timeout=600, cwd=scratch, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith(MARK)]
    if out.returncode != 0 or not lines:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise StbenchError(f"could not read the installed method plugins ({PLUGIN_GROUP} entry points): {last}")
    try:
        reported = json.loads(lines[-1][len(MARK):])
    except json.JSONDecodeError as err:
        raise StbenchError(f"the installed method plugins reported unreadable metadata ({err})") from None
    return {name: _checked_plugin(name, meta) for name, meta in reported.items()
            if isinstance(meta, dict) and name not in load()["methods"]}


def _checked_plugin(name: str, meta: dict) -> dict:
    """A plugin's reported metadata, held to what a plugin may be: it came from the plugin's own
    process, so a plugin that says it is a control or uses the truth is listed unavailable."""
    if meta.get("kind") == "unavailable":
        return meta
    why = ""
    if meta.get("kind") not in PLUGIN_KINDS:
        why = f"kind {str(meta.get('kind'))[:20]!r}; a plugin is one of {', '.join(PLUGIN_KINDS)}"
    elif meta.get("uses_truth"):
        why = "it says it uses the truth; only the built-in positive control does"
    elif not isinstance(meta.get("tasks"), list) or not isinstance(meta.get("params", {}), dict) \
            or not isinstance(meta.get("splits", {}), dict):
        why = "its metadata is malformed (tasks, params or splits)"
    if why:
        return {"unavailable": why, "kind": "unavailable", "version": "", "tasks": [], "params": {},
                "summary": "unavailable: " + why}
    return meta


def methods() -> dict:
    """Every registered method's metadata: built-in (from the file) and plugins."""
    return {**load()["methods"], **plugin_methods()}


def tasks() -> dict:
    return load()["tasks"]


def tasks_of_dataset(name: str) -> list[str]:
    """The tasks that run on a dataset: derived from the tasks' declarations, never listed twice."""
    return [t for t, decl in tasks().items() if name in decl["datasets"]]


def method_metadata(name: str) -> dict:
    """One method's metadata; an unknown name is one error listing the registered ones."""
    builtin = load()["methods"]
    if name in builtin:
        return builtin[name]
    known = methods()
    if name not in known:
        raise UnknownNameError("method", name, known)
    if known[name].get("unavailable"):
        raise StbenchError(f"method {name!r} is unavailable: its adapter failed to import "
                           f"({known[name]['unavailable']}). Expected: an adapter that imports; fix or uninstall it")
    return known[name]


def check_params(method: str, params: dict, defaults: dict) -> None:
    """Refuse an unknown parameter name or a value whose type does not match the default's,
    with one error that lists the method's parameters and their defaults."""
    listing = ", ".join(f"{k}={json.dumps(v)}" for k, v in defaults.items()) or "none"
    for key, value in params.items():
        if key not in defaults:
            raise StbenchError(f"method {method!r} has no parameter {key!r}. Expected one of its parameters "
                               f"(defaults): {listing}")
        if not _same_type(value, defaults[key]):
            raise StbenchError(f"method {method!r}: parameter {key}={json.dumps(value)} is a "
                               f"{type(value).__name__}; Expected a {type(defaults[key]).__name__} like its "
                               f"default {key}={json.dumps(defaults[key])}. Its parameters (defaults): {listing}")


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME:key=value,key2=value2`` -> (NAME, {key: value}); values parsed as JSON when they can be
    (the form `stbench run --methods` and `stbench compare` take)."""
    name, _, rest = text.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise StbenchError(f"method variant {text!r}: {item!r} is not key=value. "
                               "Expected NAME:key=value,key2=value2")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return name, params


def variant_name(name: str, params: dict, defaults: dict, version: str | None = None,
                 default_version: str | None = None) -> str:
    """The full name of a method variant, as `stbench run --methods` and `stbench compare` take
    it: ``NAME``, ``NAME@VERSION``, ``NAME:key=value,...`` for the parameters that differ
    from the defaults. Every output names variants this way, never by the base name alone."""
    label = name if version is None or version == default_version else f"{name}@{version}"
    changed = {k: v for k, v in params.items() if defaults.get(k, object()) != v}
    if changed:
        label += ":" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(changed.items()))
    return label


def _same_type(value, default) -> bool:
    if default is None or value is None:
        return True  # None means "the method decides": any value, or None for a typed default
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        print(f"wrote {write()}")
    else:
        current = build()
        print("manifest.json is current" if current == json.loads(json.dumps(load(), default=str)) else
              "manifest.json is stale: python -m stbench.manifest --write")
