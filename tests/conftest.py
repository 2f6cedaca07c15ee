"""Shared fixtures: a tiny seeded synthetic dataset and the real-data folder."""

import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test workers on two cores: torch and BLAS in each worker would otherwise start one
    # thread per core, and four spinning OpenMP threads on two cores run slower than one worker.
    # Set before torch is imported; the cells that tests start set their own thread count.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def tiny():
    """400 spots x 80 genes per slice, 3 slices: enough signal, a few seconds per task."""
    from stbench.datasets.loading import Dataset, _normalise
    from stbench.datasets.registry import get_dataset_spec
    from stbench.datasets.synthetic import content_sha256, simulate_tissue

    adata = simulate_tissue(n_spots=400, n_genes=80, n_slices=3, seed=1)
    return Dataset(get_dataset_spec("synthetic"), _normalise(adata), content_sha256(adata))


def _data_dir() -> Path | None:
    env = os.environ.get("STBENCH_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    return here if here.is_dir() else None


@pytest.fixture(scope="session")
def data_dir():
    d = _data_dir()
    if d is None:
        pytest.skip("real datasets not found: set STBENCH_DATA to the folder of the shared .h5ad files")
    return d


@pytest.fixture(scope="session")
def leaderboard_results(tmp_path_factory):
    """A small results folder made by real ``stbench run`` invocations on the built-in synthetic
    tissue (two seeds): domains, alignment, gene imputation with a weakened variant of
    low_rank_completion beside its default, and one method that fails, for the failed-cells view."""
    import sys

    from stbench.cli import main
    from stbench.benchmark.runner import run_benchmark

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fault_adapters

    results = tmp_path_factory.mktemp("leaderboard")
    common = ["--results", str(results), "--quiet", "--seeds", "0", "1"]
    assert main(["run", "--tasks", "domain_identification", "alignment", "--methods", "pca_kmeans", "leiden_k",
                 "icp", "identity", *common]) == 0
    gene = ["run", "--tasks", "gene_imputation", "--splits", "dropout30", *common]
    assert main([*gene, "--methods", "low_rank_completion", "gene_mean"]) == 0
    assert main([*gene, "--methods", "low_rank_completion:iterations=1"]) == 0
    run_benchmark(tasks=["spatial_imputation"], splits=["random20"], seeds=[0], results_dir=results,
                  methods=["negative_control", "positive_control", "knn_interpolation", fault_adapters.raises],
                  progress=False)
    return results


def pytest_itemcollected(item):
    """The suite runs on two pytest-xdist workers (``-n 2`` in pyproject.toml): most tests wait on
    cell processes, so one worker leaves a core idle. A session fixture is built once per worker,
    so the tests that share the 80-second ``leaderboard_results`` folder go to one worker together
    (``--dist loadgroup``) instead of each worker building its own. Marked as each test is
    collected: xdist reads the marks in its own ``pytest_collection_modifyitems``."""
    if "leaderboard_results" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.xdist_group("leaderboard_results"))
