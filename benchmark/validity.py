"""The validity rule: does a (task, split)'s primary metric measure what its task is about?

On a dataset, seeds 0-2, the primary metric (oriented so that higher is better) must order

    negative control < the task's trivial baseline < its best simple spatial baseline < positive control

each gap larger than the seed sd (the larger of the two methods' sds of the per-seed mean
over the instances used). Where the trivial baseline scores chance level by construction
(``Task.TRIVIAL_IS_CHANCE``: a prediction constant per gene has per-gene Pearson 0; no
alignment under a uniformly random rotation is a random placement) the first gap cannot
exist, and the rule asks only that the trivial baseline is not below the negative control
by more than noise (2 sd, or 1 % of the negative-to-positive span).

``tests/test_validity.py`` holds every ranked split to it on the synthetic tissue;
``scripts/validity_report.py`` prints the same ordering on the real datasets. Methods run
in this process through ``run_cell`` (no isolation): fine for controls and baselines.
"""

from __future__ import annotations

import warnings

import numpy as np

from stbench.benchmark.inprocess import run_cell
from stbench.methods import get_method
from stbench.tasks.metrics import METRICS

SEEDS = (0, 1, 2)
CHANCE_TOLERANCE = 0.01  # a tie with chance is "within noise" up to this share of the control span


def rule_methods(task) -> list[str]:
    """The methods the rule compares on a task: controls, trivial and spatial baselines."""
    return ["negative_control", task.TRIVIAL_BASELINE, *task.SPATIAL_BASELINES, "positive_control"]


def primary_by_seed(task, dataset, split, methods, instances, seeds=SEEDS) -> dict[str, np.ndarray]:
    """method -> per-seed mean over ``instances`` of the primary metric, oriented higher = better.
    A method that does not apply (skipped) is left out; any other failure raises."""
    sign = 1.0 if METRICS[task.primary_metric].higher_is_better else -1.0
    values: dict[str, list] = {}
    for seed in seeds:
        per_method: dict[str, list] = {}
        for instance in instances:
            problem = task.make_problem(dataset, instance, split, seed)
            for name in methods:
                method = get_method(name)
                if task.name not in method.tasks:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row = run_cell(problem, method)
                if row["status"] == "skipped":
                    continue
                if row["status"] != "ok":
                    raise RuntimeError(f"{name} on {task.name}/{split}: {row['status']} {row['error']}")
                per_method.setdefault(name, []).append(sign * row[task.primary_metric])
        for name, v in per_method.items():
            values.setdefault(name, []).append(float(np.mean(v)))
    return {name: np.array(v) for name, v in values.items()}


def best_spatial(task, scores: dict[str, np.ndarray]) -> str:
    return max((m for m in task.SPATIAL_BASELINES if m in scores), key=lambda m: scores[m].mean())


def ordering_failures(task, scores: dict[str, np.ndarray]) -> list[str]:
    """The pairs that break the rule, each said as 'A (mean ± sd) is not below B (mean ± sd)'."""
    chain = ["negative_control", task.TRIVIAL_BASELINE, best_spatial(task, scores), "positive_control"]
    span = scores["positive_control"].mean() - scores["negative_control"].mean()
    failures = []
    for low, high in zip(chain, chain[1:]):
        lo, hi = scores[low], scores[high]
        sd = max(lo.std(ddof=1), hi.std(ddof=1)) if min(len(lo), len(hi)) > 1 else 0.0
        gap = hi.mean() - lo.mean()
        if low == "negative_control" and task.TRIVIAL_IS_CHANCE:
            ok = gap >= -max(2 * sd, CHANCE_TOLERANCE * abs(span))
        else:
            ok = gap > sd
        if not ok:
            failures.append(f"{low} ({lo.mean():.4f} ± {lo.std(ddof=1):.4f}) is not below "
                            f"{high} ({hi.mean():.4f} ± {hi.std(ddof=1):.4f}) by more than the seed sd")
    return failures
