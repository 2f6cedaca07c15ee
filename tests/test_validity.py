"""The validity rule (issue 16; ``stbench.benchmark.validity`` states it): a ranked
(task, split) must measure what its task is about. On the synthetic tissue, seeds 0-2,
its primary metric must order negative control < trivial baseline < best simple spatial
baseline < positive control, each gap larger than the seed sd (with the declared
exception where the trivial baseline is chance by construction).

A split that fails is not ranked: its task says why (``Task.UNRANKED`` or
``unranked_reason``); the denoising test below keeps the real-data verdicts true. Each
task declares its baselines (``TRIVIAL_BASELINE``, ``SPATIAL_BASELINES``).
"""

from __future__ import annotations

import pytest

from stbench.benchmark.validity import ordering_failures, primary_by_seed, rule_methods
from stbench.datasets.loading import Dataset, load_dataset
from stbench.tasks import TASKS


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


RANKED = [(name, split) for name, task in TASKS.items() for split in task.splits if split not in task.UNRANKED]


@pytest.mark.parametrize("task_name,split", RANKED, ids=[f"{t}/{s}" for t, s in RANKED])
def test_ranked_split_orders_controls_and_baselines(synthetic, task_name, split):
    task = TASKS[task_name]
    assert task.TRIVIAL_BASELINE and task.SPATIAL_BASELINES, \
        f"task {task_name} must declare TRIVIAL_BASELINE and SPATIAL_BASELINES for the validity rule"
    assert not task.unranked_reason(synthetic, split), f"{task_name}/{split} is unranked on the synthetic tissue"
    # the first instance (slice, pair or group) of the tissue: the rule is about the protocol
    instances = task.instances(synthetic.spec)[:1]
    scores = primary_by_seed(task, synthetic, split, rule_methods(task), instances)
    failures = ordering_failures(task, scores)
    assert not failures, f"{task_name}/{split} ({task.primary_metric}) must not be ranked: " + "; ".join(failures)


@pytest.mark.parametrize("split,ranked", [("gaussian", False), ("thinning", True)])
def test_denoising_on_a_sample_target_is_ranked_as_the_rule_says(synthetic, split, ranked):
    """On real data, denoising's gaussian and thinning splits are scored against the clean
    matrix, a noisy sample. The same protocol on the synthetic tissue (its true rates removed,
    so the target is the clean sample) decides whether those cells are ranked: gaussian fails
    the rule (the identity is not beaten: unranked), thinning passes (ranked)."""
    task = TASKS["denoising"]
    sample_only = synthetic.adata.copy()
    del sample_only.layers["rates"]
    dataset = Dataset(synthetic.spec, sample_only, synthetic.sha256)
    failures = ordering_failures(task, primary_by_seed(task, dataset, split, rule_methods(task), ["slice0"]))
    reason = task.unranked_reason(dataset, split)
    assert (not failures) == ranked, f"denoising/{split} on a sample target: rule failures {failures}"
    assert bool(reason) != ranked, f"denoising/{split} on a sample target is declared {'un' if reason else ''}ranked"
    if not ranked:
        assert failures[0].startswith(f"{task.TRIVIAL_BASELINE} "), failures  # the identity wins, as the reason says


@pytest.mark.parametrize("name,ranked", [("merfish_hypothalamus", False), ("dlpfc", True)])
def test_alignment_is_ranked_only_where_the_true_placement_transfers_the_labels(data_dir, name, ranked):
    """LTARI grades a placement by the labels it transfers. MERFISH's labels are cell types: the
    true placement of its z-planes transfers almost none of them (LTARI about 0.03), so no
    alignment can be ranked by LTARI there; DLPFC's layers transfer (about 0.65)."""
    task = TASKS["alignment"]
    dataset = load_dataset(name, data_dir)
    problem = task.make_problem(dataset, task.instances(dataset.spec)[0], "rigid", 0)
    truth = task.checked_scores(problem, task.check_output(problem, task.reference_output(problem)))
    assert (truth["ltari"] > 0.5) == ranked, f"{name}: the true placement's LTARI is {truth['ltari']:.3f}"
    assert bool(task.unranked_reason(dataset, "rigid")) != ranked
