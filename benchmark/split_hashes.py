"""The committed split hashes: every registered (task, split, dataset, instance, seed 0-2), and
the reference board's extra seeds (``EXTRA_SEEDS``: seeds 0-9 of domain identification on
DLPFC 151673), so the board's cell keys are known without the data.

``stbench splits --write`` regenerates ``tasks/split_hashes.json`` (only when a
split is changed on purpose, with a task version bump); ``stbench splits``
checks the current code and data against it, as the test suite does.
"""

from __future__ import annotations

import json
from pathlib import Path

from stbench.errors import DataNotFoundError
from stbench.datasets.loading import load_dataset
from stbench.datasets.registry import DATASETS
from stbench.tasks import TASKS

MANIFEST = Path(__file__).resolve().parent.parent / "tasks" / "split_hashes.json"
SEEDS = (0, 1, 2)
EXTRA_SEEDS = {("domain_identification", "dlpfc", "151673"): tuple(range(10))}


def split_key(task: str, split: str, dataset: str, instance: str, seed: int) -> str:
    return f"{task}/{split}/{dataset}/{instance}/{seed}"


def compute_split_hashes(datasets=None, data_dir=None, seeds=SEEDS) -> tuple[dict[str, str], list[str]]:
    """(hashes of every registered split of the given datasets, names of datasets whose file is missing)."""
    hashes, missing = {}, []
    for name in datasets or DATASETS:
        try:
            dataset = load_dataset(name, data_dir)
        except DataNotFoundError:
            missing.append(name)
            continue
        for task in TASKS.values():
            for instance in task.instances(dataset.spec):
                for split in task.splits:
                    if not task.applies(dataset.spec, split):
                        continue
                    extra = EXTRA_SEEDS.get((task.name, name, instance), ()) if seeds == SEEDS else ()
                    for seed in dict.fromkeys([*seeds, *extra]):
                        hashes[split_key(task.name, split, name, instance, seed)] = \
                            task.split_sha256(dataset, instance, split, seed)
    return hashes, missing


def load_manifest() -> dict[str, str]:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def write_manifest(hashes: dict[str, str], datasets=None) -> int:
    """Write the manifest. With ``datasets``, only those datasets' entries are replaced (a new
    synthetic-only task needs no real data file on disk); the others stay as committed.
    Returns how many entries were written for the datasets named."""
    if datasets:
        kept = {k: v for k, v in load_manifest().items() if k.split("/")[2] not in set(datasets)}
        hashes = {**kept, **hashes}
    MANIFEST.write_text(json.dumps(dict(sorted(hashes.items())), indent=1) + "\n")
    return len(hashes)


def drift(current: dict[str, str], committed: dict[str, str]) -> list[str]:
    """Keys whose hash differs from, or is absent in, the committed manifest."""
    return sorted(k for k, v in current.items() if committed.get(k) != v)
