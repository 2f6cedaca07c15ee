"""One method on one Problem *in the caller's process*: for unit tests, debugging and the
validity checks, never for published results.

No isolation, no limits, no record: ``runner.run_benchmark`` is the real thing. This is the one
module of the engine that imports adapters (it is handed Method objects); the runner never
imports it.
"""

from __future__ import annotations

import copy
import tempfile
import time
import traceback
from pathlib import Path

from stbench.benchmark.planning import MethodInfo
from stbench.benchmark.runner import _base_row, _check_and_score
from stbench.errors import ContractError, MethodNotApplicable
from stbench.methods import Method, RunContext
from stbench.tasks import get_task


def run_cell(problem, method: Method, params: dict | None = None) -> dict:
    """Run ``method`` on ``problem`` here and score it; returns the row the runner would record.

    A split the method's declaration excludes is ``skipped`` without running; a method that
    refuses at run time (MethodNotApplicable) is an ``error``, as in the runner."""
    params = {**method.params, **(params or {})}
    info = MethodInfo.from_metadata(method.name, method.metadata())
    row = _base_row(problem, info, params)
    start = time.perf_counter()
    skip = info.skip_reason(problem.task, problem.split)
    if skip:
        row.update(status="skipped", error=skip, wall_time_s=0.0)
        return row
    with tempfile.TemporaryDirectory(prefix="stbench-") as scratch:
        ctx = RunContext(seed=problem.seed, device=row["device"], scratch_dir=Path(scratch), params=params,
                         task=problem.task, split=problem.split,
                         solution=get_task(problem.task).reference_output(problem) if method.uses_truth else None)
        from stbench.benchmark.child import seed_everything

        seed_everything(problem.seed)
        try:
            output = method.run(problem.task, copy.deepcopy(problem.inputs), ctx)
            row["time_method_s"] = time.perf_counter() - start
            _check_and_score(row, problem, output)
        except MethodNotApplicable as err:
            row.update(status="error", error=f"the method refused to run at run time ({err})")
        except ContractError as err:
            row.update(status="invalid_output", error=str(err))
        except Exception:  # noqa: BLE001 - a failing method must not stop the grid
            row.update(status="error", error="".join(traceback.format_exc().splitlines(True)[-6:]))
    row["wall_time_s"] = time.perf_counter() - start
    return row
