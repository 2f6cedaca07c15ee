"""Rebuild tests/fixtures/reference_board: a small reference board (DLPFC 151673 domain
identification, seeds 0-1, the controls and pca_kmeans) for the user-flow test of test_board.py.

    STBENCH_DATA=../shared/data python scripts/make_board_fixture.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from stbench.benchmark.board import LOCAL_COLUMNS, write_catalog
from stbench.benchmark.runner import run_benchmark

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference_board"


def main() -> None:
    report = run_benchmark(tasks=["domain_identification"], datasets=["dlpfc"], instances=["151673"], seeds=[0, 1],
                           methods=["negative_control", "positive_control", "pca_kmeans"],
                           results_dir=tempfile.mkdtemp(prefix="stbench-fixture-"), progress=False)
    table = report.results.copy()
    for col in LOCAL_COLUMNS:
        table[col] = ""
    FIXTURE.mkdir(parents=True, exist_ok=True)
    table.to_parquet(FIXTURE / "results.parquet", index=False)
    write_catalog(FIXTURE, table)
    print(f"wrote {len(table)} cells to {FIXTURE}")


if __name__ == "__main__":
    main()
