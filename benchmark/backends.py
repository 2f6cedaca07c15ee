"""Where cells run: a thread per cell slot on this machine (local) or a Ray task (ray).

Either way the cell function is ``isolation.execute``: a fresh child process per
cell, so the two backends give the same results.
"""

from __future__ import annotations

import os
from pathlib import Path

from stbench.benchmark import isolation
from stbench.errors import StbenchError


class Backend:
    """Runs the cell function: in a thread here (local) or as a Ray task (ray)."""

    def __init__(self, executor: str, jobs: int, address: str | None):
        self.executor, self.jobs = executor, jobs
        if executor == "local":
            return
        if executor != "ray":
            raise StbenchError(f"unknown executor {executor!r}. Expected: local or ray")
        try:
            import ray
        except ImportError:
            raise StbenchError("--executor ray needs Ray: pip install 'stbench[ray]'") from None
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        self.ray = ray
        self.remote = ray.remote(num_cpus=1, max_retries=0)(isolation.execute)
        self._refs: dict[str, object] = {}

    def share(self, problem_id: str, inputs_path: Path):
        """Ray workers may run on other machines: ship the inputs through the object store, once."""
        if self.executor == "ray" and problem_id not in self._refs:
            self._refs[problem_id] = self.ray.put(inputs_path.read_bytes())
            while len(self._refs) > 3:  # at most two problems are in flight
                self._refs.pop(next(iter(self._refs)))

    def run(self, job: isolation.Job, problem_id: str) -> isolation.ChildResult:
        if self.executor == "local":
            return isolation.execute(job)
        return self.ray.get(self.remote.remote(job, self._refs[problem_id]))
