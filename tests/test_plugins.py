"""Plugins through the ``stbench.methods`` entry point: the README's example runs on every task,
and a plugin that fails to import is listed as unavailable while everything else works."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugins import CLI, install_plugin  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_plugin() -> str:
    blocks = re.findall(r"```python\n(# stbench plugin example\n.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README's plugin example (a python block starting '# stbench plugin example')"
    return blocks[0]


def test_the_readme_plugin_example_runs_on_every_task(tmp_path):
    env = install_plugin(tmp_path / "site", "stbench_example_plugin", readme_plugin())
    listed = subprocess.run(CLI + ["list", "methods"], env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    names = ["example_knn", "example_gene_mean", "example_kmeans", "example_pca", "example_centroid"]
    assert all(n in listed.stdout for n in names)
    results = tmp_path / "results"
    run = subprocess.run(CLI + ["run", "--methods", *names, "--instances", "slice0", "slice0+slice1+slice2",
                                "slice0>slice1", "--splits", "random20", "dropout30", "mcv", "whole_slice",
                                "all_slices", "rigid", "--results", str(results), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_parquet(results / "results.parquet")
    mine = table[table["method"].str.startswith("example_")]
    assert set(mine["task"]) == {"spatial_imputation", "gene_imputation", "denoising", "domain_identification",
                                 "multislice_integration", "alignment"}
    assert (mine["status"] == "ok").all(), mine[["task", "method", "status", "error"]]
    assert mine.loc[mine["method"] == "example_kmeans", "uses_true_k"].all()


def test_a_plugin_that_fails_to_import_is_unavailable_and_nothing_else_breaks(tmp_path):
    env = install_plugin(tmp_path / "site", "broken_plugin", "raise ImportError('needs libfoo 2.0')\n")
    listed = subprocess.run(CLI + ["list", "methods"], env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.strip().startswith("broken_plugin"))
    assert "unavailable" in line and "needs libfoo 2.0" in line
    run = subprocess.run(CLI + ["run", "--methods", "broken_plugin", "--results", str(tmp_path / "r")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "unavailable" in run.stderr and "needs libfoo 2.0" in run.stderr
    tasks = subprocess.run(CLI + ["list", "tasks"], env=env, capture_output=True, text=True, timeout=300)
    assert tasks.returncode == 0 and "domain_identification" in tasks.stdout
