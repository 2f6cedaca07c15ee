"""Every registered method on every task it solves, through ``run_cell`` on a tiny problem.

Like Open Problems' test mode: a new adapter cannot land untested, because this test runs
whatever is registered (no hand-kept list). Each method runs with its ``smoke`` parameters
(two epochs, say) and must end ``ok`` or ``skipped``; its metadata must say what it is.
"""

import pytest

from stbench.benchmark.inprocess import run_cell
from stbench.methods import METHODS, UNAVAILABLE
from stbench.tasks import TASKS

PAIRS = [(m, t) for m in sorted(METHODS) for t in METHODS[m].tasks]


@pytest.fixture(scope="module")
def problems(tiny):
    """One tiny problem per task: its first split, first instance, seed 0."""
    out = {}
    for name, task in TASKS.items():
        instance = task.instances(tiny.spec)[0]
        out[name] = task.make_problem(tiny, instance, task.splits[0], 0)
    return out


def test_every_adapter_imports():
    assert not UNAVAILABLE, f"adapters that failed to import: {UNAVAILABLE}"
    assert len(PAIRS) >= 40


@pytest.mark.parametrize("method,task", PAIRS, ids=[f"{m}-{t}" for m, t in PAIRS])
def test_registered_method_runs_on_its_task(method, task, problems):
    m = METHODS[method]
    row = run_cell(problems[task], m, dict(m.smoke))
    assert row["status"] in ("ok", "skipped"), f"{method} on {task}: {row['status']}\n{row['error']}"
    if row["status"] == "ok":
        assert row[TASKS[task].primary_metric] == row[TASKS[task].primary_metric]  # scored, not NaN


@pytest.mark.parametrize("method", sorted(METHODS))
def test_registered_method_says_what_it_is(method):
    m = METHODS[method]
    assert m.summary.strip(), f"{method}: a one-line summary"
    if m.kind in ("seed", "peer"):
        assert m.paper and m.code_url.startswith("http"), f"{method}: the paper and the code it reimplements"
        assert "deviation" in m.deviations.lower() or len(m.deviations) > 40, \
            f"{method}: a Deviations section (what differs from the paper and why)"
    assert set(m.smoke) <= set(m.params), f"{method}: smoke parameters {set(m.smoke) - set(m.params)} are not params"


FIRST_TASK = [(m, METHODS[m].tasks[0]) for m in sorted(METHODS)]


@pytest.fixture
def one_thread():
    """One torch thread, as every cell of the runner has (``benchmark/child.py``): with more, or
    without the explicit call, MKL's float32 products differ in the last bits run to run."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("method,task", FIRST_TASK, ids=[f"{m}-{t}" for m, t in FIRST_TASK])
def test_same_seed_gives_the_same_scores(method, task, problems, one_thread):
    """A published cell must be re-runnable: the same seed gives the same scores, in a new run.

    Run twice in one process, so state a library keeps between calls (a random generator of
    its own that the cell's seeding does not reach, as POT's was in STAGE version 1) shows as a
    difference here."""
    m = METHODS[method]
    first, second = (run_cell(problems[task], m, dict(m.smoke)) for _ in range(2))
    same = lambda a, b: a == b or (a != a and b != b)  # noqa: E731 - NaN equals NaN here
    differ = {k: (first[k], second[k]) for k in TASKS[task].metrics if not same(first.get(k), second.get(k))}
    assert first["status"] == second["status"] and not differ, \
        f"{method} on {task}, seed {problems[task].seed} twice: {differ or (first['status'], second['status'])}"
