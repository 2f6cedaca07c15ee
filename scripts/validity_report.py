"""The validity rule on real data: per (task, split, dataset), the primary metric of the
negative control, the trivial baseline, the simple spatial baselines and the positive
control (mean ± sd over seeds 0-2 of the first instance), and whether the ordering holds
(``stbench.benchmark.validity``). A report, not a test: it prints a Markdown table.

Usage: STBENCH_DATA=../shared/data python scripts/validity_report.py [--datasets dlpfc ...] [--tasks ...]
"""

import argparse
import time
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    from stbench.errors import DataNotFoundError
    from stbench.benchmark.validity import best_spatial, ordering_failures, primary_by_seed, rule_methods
    from stbench.datasets.loading import load_dataset
    from stbench.tasks import TASKS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+",
                    default=["dlpfc", "dlpfc_7k", "merfish_hypothalamus", "starmap_mpfc", "her2st"])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    print("Primary metrics oriented so that higher is better (an error metric is negated).\n")
    print("| task / split | dataset · instance | negative | trivial | best spatial | positive | ordering | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.datasets:
        try:
            dataset = load_dataset(name, args.data_dir)
        except DataNotFoundError as err:
            print(f"| – | {name} | not found: {err} | | | | | |")
            continue
        for task_name in args.tasks:
            task = TASKS[task_name]
            instances = task.instances(dataset.spec)[:1]
            for split in task.splits:
                if not instances or not task.applies(dataset.spec, split):
                    continue
                t0 = time.perf_counter()
                scores = primary_by_seed(task, dataset, split, rule_methods(task), instances)
                spatial = best_spatial(task, scores)
                failures = ordering_failures(task, scores)
                unranked = task.unranked_reason(dataset, split)
                verdict = "holds" if not failures else "FAILS: " + "; ".join(failures)
                if unranked:
                    verdict += " (not ranked here)"
                cells = [f"{scores[m].mean():.4f} ± {scores[m].std(ddof=1):.4f}" for m in
                         ("negative_control", task.TRIVIAL_BASELINE, spatial, "positive_control")]
                print(f"| {task_name} / {split} ({task.primary_metric}) | {name} · {instances[0]} | {cells[0]} | "
                      f"{task.TRIVIAL_BASELINE} {cells[1]} | {spatial} {cells[2]} | {cells[3]} | {verdict} | "
                      f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
