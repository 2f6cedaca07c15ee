"""What the memory record says for a benign pool and a fork tree (issue 21): the peak of the
cell's proportional set (PSS, all processes: what --memory limits), its first process's RSS,
and what a sum of RSS over the processes would have said (measured here, once per second).

    python scripts/memory_figures.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import fault_adapters as faults  # noqa: E402

from stbench.benchmark.runner import run_benchmark  # noqa: E402


def rss_sum_watch(stop: threading.Event, peak: list) -> None:
    """The old figure: RSS summed over every descendant of this process's fork server's cells."""
    me = psutil.Process()
    while not stop.is_set():
        total = 0
        for p in me.children(recursive=True):
            try:
                if "forkserver" in " ".join(p.cmdline()) and p.parent().pid != me.pid:  # cells, not the server
                    total += p.memory_info().rss
            except psutil.Error:
                pass
        peak[0] = max(peak[0], total)
        time.sleep(0.5)


def main() -> None:
    for method, params in ((faults.benign_pool, {"workers": 4, "mb": 50}), (faults.fork_tree, {"depth": 4, "mb": 10})):
        stop, peak = threading.Event(), [0]
        watcher = threading.Thread(target=rss_sum_watch, args=(stop, peak), daemon=True)
        watcher.start()
        report = run_benchmark(tasks=["spatial_imputation"], splits=["random20"], instances=["slice0"],
                               methods=[method], method_params={method.name: params}, memory="1.5G",
                               results_dir=tempfile.mkdtemp(prefix="stbench-mem-"), progress=False)
        stop.set()
        row = report.results.iloc[0]
        print(f"{method.name} {params}: status {row['status']}; peak PSS of the cell {row['peak_pss_mb']:.0f} MiB; "
              f"first process peak RSS {row['peak_rss_mb']:.0f} MiB; RSS summed over its processes "
              f"(the old measure) {peak[0] / 2**20:.0f} MiB; ceiling 1536 MiB")


if __name__ == "__main__":
    main()
