"""The layering, read from every module's imports with ``ast`` (function-level imports too).

    errors       nothing of ours: every layer may raise its errors
    sandbox      nothing of ours: the restrictions a process puts on itself (a cell, plugin discovery)
    datasets     errors
    tasks        datasets and errors (a task reads a dataset and says what a method may see)
    methods      tasks' input types and errors (an adapter never reaches the engine or the truth)
    manifest     errors and sandbox; tasks and methods only where it writes manifest.json from the code
    benchmark    everything but the leaderboard and the CLI (the engine); but the runner's own
                 modules never import an adapter (only the cell's: child, and inprocess for tests)
    leaderboard  errors, the manifest and the results schema and catalog (benchmark.store) only:
                 it never imports an adapter, a task or torch
    cli          everything (the application)

A break is named with its file and line, and the rule it breaks.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "errors": set(),
    "sandbox": {"sandbox"},
    "datasets": {"errors", "datasets"},
    "tasks": {"errors", "datasets", "tasks"},
    "methods": {"errors", "tasks", "methods"},
    "manifest": {"errors", "sandbox", "manifest"},
    "benchmark": {"errors", "sandbox", "datasets", "tasks", "methods", "manifest", "benchmark"},
    "leaderboard": {"errors", "manifest", "benchmark.store", "leaderboard", ""},
    "cli": {"errors", "sandbox", "datasets", "tasks", "methods", "manifest", "benchmark", "leaderboard", "cli", ""},
}
# manifest.build() writes manifest.json from the code: the one place it reads the registries
EXCEPTIONS = {("manifest", "methods"), ("manifest", "tasks")}
THIRD_PARTY_BANNED = {"leaderboard": {"torch", "torch_geometric", "scanpy", "anndata"},
                      "datasets": {"torch"}, "tasks": {"torch"}}


def _layer(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            if node.module == "stbench":  # `from stbench import manifest`: a submodule, not the root
                for alias in node.names:
                    if (ROOT / alias.name).is_dir() or (ROOT / f"{alias.name}.py").is_file():
                        yield node.lineno, f"stbench.{alias.name}"


def _target(module: str) -> str | None:
    """The layer an stbench import reaches ("" for the package root itself), None for a third party."""
    if module == "stbench":
        return ""
    if not module.startswith("stbench."):
        return None
    parts = module.split(".")[1:]
    if parts[0] == "benchmark" and len(parts) > 1 and parts[1] == "store":
        return "benchmark.store"
    return parts[0]


def test_every_module_imports_only_from_the_layers_below_it():
    breaks = []
    files = [p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] in LAYERS or p.stem in LAYERS]
    assert len(files) > 50
    for path in files:
        layer = _layer(path)
        if layer not in LAYERS:
            continue
        allowed = LAYERS[layer]
        for line, module in _imports(path):
            target = _target(module)
            if target is None:
                if module.split(".")[0] in THIRD_PARTY_BANNED.get(layer, ()):
                    breaks.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({layer} must not)")
                continue
            ok = target in allowed or (target.startswith("benchmark") and "benchmark" in allowed) \
                or (layer, target) in EXCEPTIONS
            if not ok:
                breaks.append(f"{path.relative_to(ROOT)}:{line} imports {module}: {layer} may import only "
                              f"{sorted(allowed - {''}) or 'nothing of ours'}")
    assert not breaks, "layering breaks:\n" + "\n".join(breaks)


# The modules that run in the cell's process, or in the caller's for tests: the only engine
# modules that may import an adapter.
CELL_SIDE = {"child.py", "inprocess.py", "validity.py"}


def test_the_runner_imports_no_adapter():
    """The runner holds every problem's solution: no adapter's module code may run in it. Read
    from the imports (function-level ones too), and checked in a fresh process that runs a grid."""
    import subprocess
    import sys

    breaks = [f"{path.relative_to(ROOT)}:{line} imports {module}"
              for path in sorted((ROOT / "benchmark").glob("*.py")) + [ROOT / "cli.py"] if path.name not in CELL_SIDE
              for line, module in _imports(path) if _target(module) == "methods"]
    assert not breaks, "the runner's modules import adapters:\n" + "\n".join(breaks)
    code = ("import sys, tempfile\nfrom stbench.benchmark.runner import run_benchmark\n"
            "r = run_benchmark(tasks=['domain_identification'], methods=['negative_control', 'pca_kmeans'],\n"
            "                  instances=['slice0'], results_dir=tempfile.mkdtemp(), progress=False)\n"
            "assert set(r.results['status']) == {'ok'}, r.results[['method', 'status', 'error']]\n"
            "print(sorted(m for m in sys.modules if m.startswith('stbench.methods') or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
