"""What every task shares: the Problem a split produces, the Task interface,
seeded split randomness and split hashing.

Data flow of one cell::

    Dataset --task.make_problem(dataset, instance, split, seed)--> Problem
        Problem.inputs   -> the method (the input view: no truth in it)
        Problem.solution -> stays with the task (and the positive control)
    method output --task.check_output--> validated output --task.score--> metrics

``make_problem`` is deterministic in (dataset sha256, task, split, instance,
seed); ``Problem.split_sha256`` hashes the arrays that define the split, and
the committed ``split_hashes.json`` pins them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.errors import ContractError, UnknownNameError


# Markers for Task.DATASETS: every registered slice on its own, or all of them as one group.
EVERY_SLICE = "every slice"
ALL_SLICES = "all slices as one group"


@dataclass
class Problem:
    """One instance of a task: what the method sees and what it is scored against."""

    task: str
    split: str
    dataset: str
    instance: str
    seed: int
    inputs: Any
    solution: Any
    split_sha256: str
    dataset_sha256: str
    scoring: dict = field(default_factory=dict)  # task-private helpers (raster layout, ...)
    # why this (task, split, dataset) is shown but not ranked ("" = ranked); see Task.unranked_reason
    unranked: str = ""


class Built(NamedTuple):
    """What :meth:`Task.build` makes: the input view, the solution, scoring helpers."""

    inputs: Any
    solution: Any
    scoring: dict = {}


def split_rng(dataset_sha256: str, task: str, split: str, instance: str, seed: int) -> np.random.Generator:
    """The random stream of one split: a function of its identity only."""
    key = f"{dataset_sha256}/{task}/{split}/{instance}/{seed}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:16], "little"))


def hash_arrays(*arrays) -> str:
    """sha256 over arrays (dtype, shape and bytes) and strings, in order."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, str):
            h.update(a.encode())
            continue
        if sp.issparse(a):
            a = sp.csr_matrix(a)
            h.update(hash_arrays(a.indptr, a.indices, a.data).encode())
            continue
        a = np.ascontiguousarray(a)
        if a.dtype == object:
            h.update("\x1f".join(map(str, a.ravel())).encode())
        else:
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def square_grid(obs: pd.DataFrame, spec) -> np.ndarray | None:
    """Integer (row, col) of each spot on a square lattice, or None without an array grid.

    Visium's array is hexagonal: ``array_col`` steps by 2 along a row and rows
    alternate parity. Mapping (row, col) -> (row, col // 2) lays the spots on a
    square lattice (each row shifted by half a pitch on every other row), so the
    stride-2 lattice split and rasterisation apply as on a square grid.
    """
    if spec.grid_columns is None:
        return None
    rc = obs[list(spec.grid_columns)].to_numpy().astype(np.int64)
    if spec.grid_kind == "visium_hex":
        rc = np.column_stack([rc[:, 0], rc[:, 1] // 2])
    return rc


def label_array(obs: pd.DataFrame, key: str | None) -> np.ndarray | None:
    """Labels as an object array with None for missing (scored out, never removed)."""
    if key is None or key not in obs:
        return None
    col = obs[key]
    out = col.astype(object).to_numpy()
    out[col.isna().to_numpy()] = None
    return out


def known(labels: np.ndarray) -> np.ndarray:
    return np.array([v is not None for v in labels], dtype=bool)


class Task:
    """Base class of a task. A subclass sets the class attributes and implements
    ``make_split``, ``make_problem``, ``check_output`` and ``score``.

    The one declaration of what a task reports is ``metrics``: registered metric
    names (``stbench.tasks.metrics``), the primary first. ``score`` returns exactly
    those (NaN where one does not apply, e.g. a coordinate error without known
    positions); the runner checks it. Values that describe a cell rather than
    grade it (the rule a score used, how many clusters came out) are
    ``annotate``'s, recorded as tags, never as metrics. The runner's table, the
    aggregation, ``stbench compare`` and the leaderboard all read ``metrics``
    (the last three through ``declaration()`` in the results folder's catalog).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    metrics: ClassVar[tuple[str, ...]]  # primary first
    summary: ClassVar[str]
    split_summaries: ClassVar[dict[str, str]] = {}  # split -> one line: what is held out or corrupted
    input_summary: ClassVar[str] = ""  # what ``inputs`` holds, for method authors
    input_view: ClassVar[type]  # the dataclass ``inputs`` is (the one class a cell rebuilds from its input file)
    output_contract: ClassVar[str]  # said in every invalid_output message
    # dataset name -> the instances (slices, slice groups or pairs) it runs on: a list, or
    # EVERY_SLICE / ALL_SLICES so that a dataset's slices are named once, in its registry entry
    DATASETS: ClassVar[dict[str, list[str] | str]]
    # what the task gives every method that a method might not otherwise know
    provides_true_k: ClassVar[bool] = False
    # The validity rule (tests/test_validity.py): on the synthetic tissue a ranked split's
    # primary metric must order negative control < TRIVIAL_BASELINE < the best of
    # SPATIAL_BASELINES < positive control, each gap larger than the seed sd.
    TRIVIAL_BASELINE: ClassVar[str] = ""
    SPATIAL_BASELINES: ClassVar[tuple[str, ...]] = ()
    # True where the trivial baseline scores chance level by construction, so that it cannot be
    # above the negative control: the rule then asks only that it is not below it
    TRIVIAL_IS_CHANCE: ClassVar[bool] = False
    # split -> why it is run and shown but not ranked (measured; the validity test keeps it true)
    UNRANKED: ClassVar[dict[str, str]] = {}

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    def unranked_reason(self, dataset, split: str) -> str:
        """An empty string when cells of ``split`` on ``dataset`` are ranked, else why they are only shown."""
        return self.UNRANKED.get(split, "")

    def reference_output(self, problem: Problem):
        """The best possible output for ``problem``, in the task's output contract: what the
        positive control returns (the one method given it, ``uses_truth``). The task knows its
        own solution's layout, so no method has to. Default: the solution as a float matrix
        (the expression tasks)."""
        return np.array(problem.solution, dtype=np.float64)

    def random_output(self, inputs, seed: int):
        """A seeded output of the right type that carries no signal, from the method's inputs
        only: what the negative control returns (the 0 of the scaled scores)."""
        raise NotImplementedError(f"task {self.name!r} defines no random_output for the negative control")

    def annotate(self, problem: Problem, output) -> dict:
        """Bookkeeping about a scored output (recorded as tags, never ranked). ``uses_true_k``:
        True when the task itself used the true number of domains for this output."""
        return {}

    def checked_scores(self, problem: Problem, output) -> dict[str, float]:
        """``score``, held to the declaration: exactly ``metrics``, as floats (NaN allowed)."""
        scores = self.score(problem, output)
        if set(scores) != set(self.metrics):
            raise TypeError(f"task {self.name!r}: score() returned {sorted(scores)}, but the task declares "
                            f"metrics {list(self.metrics)}; a task must return exactly its declared metrics "
                            "(NaN where one does not apply) and put bookkeeping in annotate()")
        return {m: float(scores[m]) for m in self.metrics}

    def declaration(self) -> dict:
        """Plain data about the task for the results folder's catalog (the leaderboard reads it,
        so it never imports tasks): summary, splits, metrics with direction, range and formula."""
        from stbench.tasks.metrics import METRICS

        return {"name": self.name, "version": self.version, "summary": self.summary,
                "splits": {s: self.split_summaries.get(s, "") for s in self.splits},
                "primary_metric": self.primary_metric,
                "metrics": [METRICS[m].declaration() for m in self.metrics],
                "input": self.input_summary, "output": self.output_contract}

    def check_split(self, split: str) -> str:
        if split not in self.splits:
            raise UnknownNameError(f"split of task {self.name!r}", split, self.splits)
        return split

    # how instances are formed from a user's own dataset: "slice", "group" or "pairs"
    instance_unit: ClassVar[str] = "slice"

    def instances(self, spec) -> list[str]:
        """The instances this task runs on a dataset: as declared in ``DATASETS`` for a
        registered dataset; for a user's own file, every slice, all slices as one group,
        or consecutive pairs, by ``instance_unit``."""
        if spec.version != "user":
            declared = self.DATASETS.get(spec.name, [])
            if declared == EVERY_SLICE:
                return list(spec.slices)
            if declared == ALL_SLICES:
                return ["+".join(spec.slices)]
            return list(declared)
        if self.instance_unit == "group":
            return ["+".join(spec.slices)] if len(spec.slices) > 1 else []
        if self.instance_unit == "pairs":
            return [f"{a}>{b}" for a, b in zip(spec.slices, spec.slices[1:])]
        return list(spec.slices)

    def applies(self, spec, split: str) -> bool:
        """Whether a split can run on a dataset at all (e.g. a lattice needs a grid)."""
        return True

    def make_split(self, dataset, instance: str, split: str, seed: int) -> dict[str, np.ndarray]:
        """The arrays that define the split (held-out indices, masks, noise, transforms).

        Cheap by design (no preprocessing), so that every registered split can be
        re-hashed in a test against the committed ``split_hashes.json``.
        """
        raise NotImplementedError  # pragma: no cover

    def split_sha256(self, dataset, instance: str, split: str, seed: int) -> str:
        return hash_arrays(*self.make_split(dataset, instance, split, seed).values())

    def make_problem(self, dataset, instance: str, split: str, seed: int,
                     arrays: dict[str, np.ndarray] | None = None) -> Problem:
        """One instance of the task (a template method): the split is checked and its arrays
        computed once (or taken from ``arrays``, which the runner computed to hash the cell key),
        then :meth:`build` makes what the method sees and what it is scored against, and this
        method fills in the bookkeeping every task shares (identity, hashes, unranked reason)."""
        self.check_split(split)
        if arrays is None:
            arrays = self.make_split(dataset, instance, split, seed)
        built = self.build(dataset, instance, split, seed, arrays)
        return Problem(task=self.name, split=split, dataset=dataset.spec.name, instance=instance, seed=seed,
                       inputs=built.inputs, solution=built.solution, split_sha256=hash_arrays(*arrays.values()),
                       dataset_sha256=dataset.sha256, scoring=dict(built.scoring),
                       unranked=self.unranked_reason(dataset, split))

    def build(self, dataset, instance: str, split: str, seed: int, arrays: dict[str, np.ndarray]) -> "Built":
        """The task's own part of :meth:`make_problem`: from the dataset and the split's arrays,
        the method's input view, the solution and task-private scoring helpers."""
        raise NotImplementedError  # pragma: no cover

    def check_output(self, problem: Problem, output):  # pragma: no cover
        raise NotImplementedError

    def score(self, problem: Problem, output) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    def spatial_map(self, problem: Problem, output) -> dict | None:
        """What the run's small spatial plot shows (truth beside prediction), or None.

        A dict with ``xy`` (n, 2), ``truth`` and ``prediction`` (n values),
        ``kind`` ("continuous" or "categorical") and a ``title``; alignment
        tasks add ``reference_xy``.
        """
        return None

    # -- helpers shared by the output checks ---------------------------------
    def fail(self, what: str):
        raise ContractError(f"{self.name}: {what}. Expected: {self.output_contract}")

    def check_matrix(self, output, shape: tuple[int, int], nonnegative: bool = True) -> np.ndarray:
        """A dense float matrix of exactly ``shape``, finite (and >= 0: expression)."""
        if isinstance(output, pd.DataFrame):
            output = output.to_numpy()
        if sp.issparse(output):
            output = output.toarray()
        try:
            arr = np.asarray(output, dtype=np.float64)
        except (TypeError, ValueError):
            self.fail(f"the output of type {type(output).__name__} is not a numeric matrix")
        if arr.shape != tuple(shape):
            self.fail(f"the output has shape {arr.shape}, not {tuple(shape)}")
        if not np.isfinite(arr).all():
            self.fail(f"the output has {int((~np.isfinite(arr)).sum())} NaN or infinite values")
        if nonnegative and arr.min() < 0:
            self.fail(f"the output has negative expression (minimum {arr.min():.4g}); expression is >= 0")
        return arr


def n_label_classes(labels: np.ndarray) -> int:
    return len({v for v in labels if v is not None})


def imputation_ari_score(labels, predicted_full, true_full, scored: np.ndarray, cache: dict) -> float:
    """Imputation ARI of the predicted matrix (NaN without at least 2 labelled classes).

    Both the prediction and, once per problem, the truth (the ceiling this metric can
    reach, kept in ``cache["imputation_ari_reference"]`` for ``imputation_ari_annotation``)
    are clustered over the whole slice (PCA 30 + k-means, k = number of true classes);
    ARI is taken on the ``scored`` spots that carry a label.
    """
    from stbench.tasks.metrics.labels import imputation_ari

    if labels is None:
        return float("nan")
    ok = known(labels) & scored
    k = n_label_classes(labels[ok])
    if k < 2 or ok.sum() < 10:
        return float("nan")
    lab = np.array([str(v) for v in labels], dtype=object)
    if "imputation_ari_reference" not in cache:  # depends on the problem only: once for every method
        cache["imputation_ari_reference"] = imputation_ari(lab, true_full, k, ok)
    return imputation_ari(lab, predicted_full, k, ok)


def imputation_ari_annotation(problem: Problem) -> dict:
    """The imputation-ARI ceiling (the truth clustered the same way), a note beside the metric."""
    ref = problem.scoring.get("imputation_ari_reference")
    return {} if ref is None else {"imputation_ari_reference": round(float(ref), 4)}


def expression_map(xy, truth: np.ndarray, prediction: np.ndarray, var_names, what: str) -> dict:
    """The spatial map of the gene that varies most in the truth: truth beside prediction."""
    mean = truth.mean(axis=0)
    g = int(np.argmax(np.einsum("ij,ij->j", truth, truth) / len(truth) - mean**2))  # variance, no temporaries
    return {"xy": np.asarray(xy, float), "truth": truth[:, g], "prediction": prediction[:, g],
            "kind": "continuous", "title": f"{var_names[g]} ({what})"}


def make_view(obs_names, spatial, grid, slice_name, X=None, var=None, counts=None):
    """An AnnData for a method: names, coordinates, optional grid/expression/counts, nothing else.

    Building views from scratch (rather than subsetting the dataset) is what
    keeps labels, original coordinates and any other truth out of them.
    """
    import anndata as ad

    obs = pd.DataFrame({"slice": np.asarray(slice_name, dtype=object) if not isinstance(slice_name, str)
                        else slice_name}, index=pd.Index(np.asarray(obs_names).astype(str)))
    a = ad.AnnData(X=X, obs=obs, var=var)
    a.obsm["spatial"] = np.asarray(spatial, dtype=np.float64)
    if grid is not None:
        a.obsm["grid"] = np.asarray(grid, dtype=np.int64)
    if counts is not None:
        a.layers["counts"] = sp.csr_matrix(counts, dtype=np.float32)
    return a
