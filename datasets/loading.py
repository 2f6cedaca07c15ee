"""Loading a dataset: locate the file, verify its sha256, check the conventions.

Every slice reaching a task has passed :func:`validate_adata`, so tasks and
methods can rely on SPEC §2.1 (raw non-negative counts in ``X``, finite n x 2
``obsm["spatial"]``, unique ``obs_names``, ``obs["slice"]``).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.errors import ChecksumError, DataNotFoundError, DatasetError
from stbench.datasets.registry import DatasetSpec, default_data_dir, get_dataset_spec
from stbench.datasets.synthetic import content_sha256, simulate_tissue


@dataclass
class Dataset:
    """A loaded, verified dataset: the spec, the AnnData of all slices, its sha256."""

    spec: DatasetSpec
    adata: ad.AnnData
    sha256: str

    def slice(self, name: str) -> ad.AnnData:
        """One slice as a copy (tasks may modify what they get)."""
        mask = (self.adata.obs["slice"].astype(str) == str(name)).to_numpy()
        if not mask.any():
            raise DatasetError(f"dataset {self.spec.name!r} has no slice {name!r}; "
                               f"its slices are {sorted(self.adata.obs['slice'].astype(str).unique())}")
        return self.adata[mask].copy()

    def slices(self, names) -> ad.AnnData:
        """Several slices, in the order given, concatenated (a copy)."""
        return ad.concat([self.slice(n) for n in names], merge="same", uns_merge="first")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


MIN_SPOTS = 10
MAX_COORDINATE = 1e9
MAX_COUNT = 1e30  # float32 holds up to 3.4e38; counts beyond this are not counts


def validate_adata(adata: ad.AnnData, name: str, label_key: str | None = None) -> None:
    """Check SPEC §2.1; raise one DatasetError naming the problem and what was expected."""
    where = f"dataset {name!r}"
    if "spatial" not in adata.obsm:
        raise DatasetError(f"{where} has no coordinates: expected obsm['spatial'] as an n x 2 float "
                           f"array, found obsm keys {list(adata.obsm.keys())}")
    xy = np.asarray(adata.obsm["spatial"])
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] != adata.n_obs:
        raise DatasetError(f"{where}: obsm['spatial'] must have shape ({adata.n_obs}, 2), got {xy.shape}")
    if not np.issubdtype(xy.dtype, np.number):
        raise DatasetError(f"{where}: obsm['spatial'] holds {xy.dtype} values; expected numbers (x, y per spot)")
    if not np.isfinite(xy).all():
        bad = int((~np.isfinite(xy.astype(float))).any(axis=1).sum())
        raise DatasetError(f"{where}: obsm['spatial'] must be finite numbers; {bad} spots have NaN or "
                           "infinite coordinates")
    if xy.size and np.abs(xy).max() > MAX_COORDINATE:
        raise DatasetError(f"{where}: obsm['spatial'] reaches {np.abs(xy).max():.3g}; expected pixel or micron "
                           f"coordinates below {MAX_COORDINATE:.0e}")
    if adata.n_obs < MIN_SPOTS:
        raise DatasetError(f"{where} has {adata.n_obs} spots; expected at least {MIN_SPOTS} (a split holds out "
                           "a fifth of them, and scores need several)")
    if (np.ptp(xy, axis=0) == 0).all():
        raise DatasetError(f"{where}: every spot is at the same coordinates {tuple(float(v) for v in xy[0])}; expected the spots' "
                           "positions in obsm['spatial']")
    for col in ("array_row", "array_col"):
        if col in adata.obs:
            grid = pd.to_numeric(adata.obs[col], errors="coerce").to_numpy(dtype=float)
            if not np.isfinite(grid).all() or (grid != np.round(grid)).any():
                raise DatasetError(f"{where}: obs[{col!r}] must hold an integer grid index for every spot; "
                                   f"{int((~np.isfinite(grid) | (grid != np.round(grid))).sum())} do not")
    if not adata.obs_names.is_unique:
        dups = adata.obs_names[adata.obs_names.duplicated()].unique()[:5].tolist()
        raise DatasetError(f"{where}: obs_names must be unique; duplicated names include {dups}")
    if not adata.var_names.is_unique:
        dups = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        raise DatasetError(f"{where}: var_names (gene symbols) must be unique; duplicated: {dups}")
    if adata.n_vars == 0:
        raise DatasetError(f"{where} has no genes (X has 0 columns); expected spots x genes counts")
    values = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if not np.issubdtype(values.dtype, np.number):
        raise DatasetError(f"{where}: X holds {values.dtype} values; expected numbers (raw counts)")
    if values.size and not np.isfinite(values).all():
        raise DatasetError(f"{where}: X must hold finite raw counts; found NaN or infinite values")
    if values.size and values.min() < 0:
        raise DatasetError(f"{where}: X must hold raw non-negative counts; found a minimum of {values.min()}")
    if values.size and values.max() > MAX_COUNT:
        raise DatasetError(f"{where}: X reaches {values.max():.3g}; expected counts below {MAX_COUNT:.0e} "
                           "(stored as float32)")
    if not values.size or values.max() == 0:
        raise DatasetError(f"{where}: X is all zeros; expected the spots' counts")
    if label_key is not None and label_key not in adata.obs:
        raise DatasetError(f"{where}: label column obs[{label_key!r}] does not exist; "
                           f"obs columns are {list(adata.obs.columns)}")
    if label_key is not None:
        labels = adata.obs[label_key].dropna().astype(str)
        if labels.empty:
            raise DatasetError(f"{where}: label column obs[{label_key!r}] has no label (every value is missing); "
                               "expected the spots' domains, or --label-key naming another column")
        if labels.nunique() < 2:
            raise DatasetError(f"{where}: label column obs[{label_key!r}] has one class ({labels.iloc[0]!r}); "
                               "expected at least two domains (with one, every clustering scores the same)")
    if "slice" not in adata.obs:
        raise DatasetError(f"{where}: expected obs['slice'] naming the slice of each spot")


def _normalise(adata: ad.AnnData) -> ad.AnnData:
    """Light conversions that keep the data as it is: CSR float32 X, float coordinates, str slices."""
    if not sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    adata.obs["slice"] = adata.obs["slice"].astype(str).astype("category")
    return adata


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, data_dir: str) -> Dataset:
    spec = get_dataset_spec(name)
    if spec.filename is None:
        adata = simulate_tissue(seed=0, rates=True, **spec.simulate)
        validate_adata(adata, name, spec.label_key)
        return Dataset(spec, _normalise(adata), content_sha256(adata))
    path = Path(data_dir) / spec.filename
    if not path.is_file():
        raise DataNotFoundError(
            f"dataset {name!r} needs the file {spec.filename!r}, which is not in the data directory "
            f"{data_dir!s}. Put the file there (or point --data-dir / $STBENCH_DATA at the folder that "
            f"holds it). It comes from: {spec.source.get('url', 'see the registry')} "
            f"(paper: {spec.source.get('paper', '?')}); expected sha256 {spec.sha256}.")
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise ChecksumError(f"dataset file {str(path)!r} has sha256 {actual}, but the registry expects "
                            f"{spec.sha256} for {name!r} version {spec.version}: the file is corrupt or "
                            "a different version; replace it with the registered one")
    adata = ad.read_h5ad(path)
    validate_adata(adata, name, spec.label_key)
    return Dataset(spec, _normalise(adata), actual)


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load a registered dataset (cached in process), verifying its checksum."""
    get_dataset_spec(name)  # unknown names fail before any file access
    return _load_cached(name, str(resolve_data_dir(data_dir)))


def load_user_dataset(path: str | Path, label_key: str | None = "domain", layer: str | None = None,
                      counts: bool = True) -> Dataset:
    """A user's own AnnData (``stbench run --dataset-file``): validated like a registered one.

    It is recorded as ``STEM-SHA8`` (the file's stem and the first 8 hex digits of its sha256)
    with its full sha256. Slices come from ``obs["slice"]`` (a single slice named after the file
    if the column is absent); ``obs["array_row"/"array_col"]`` give a grid (hexagonal when
    ``uns["platform"]`` names Visium).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"dataset file {str(path)!r} does not exist")
    try:
        adata = ad.read_h5ad(path)
    except Exception as err:  # noqa: BLE001 - h5py, anndata and OS errors alike: the file is not one
        raise DatasetError(f"dataset file {str(path)!r} could not be read as an AnnData .h5ad file "
                           f"({type(err).__name__}: {str(err)[:200]}). Expected: a file written by "
                           "AnnData.write_h5ad") from None
    if layer is not None:
        if layer not in adata.layers:
            raise DatasetError(f"dataset file {str(path)!r} has no layer {layer!r}; its layers are "
                               f"{list(adata.layers.keys())}")
        adata.X = adata.layers[layer]
    if counts:  # stbench normalises counts itself: log-normalised input would be normalised twice
        values = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
        if np.issubdtype(values.dtype, np.number) and values.size and np.isfinite(values).all() \
                and (values != np.round(values)).any():
            example = values[values != np.round(values)][0]
            raise DatasetError(f"dataset file {str(path)!r}: {'layer ' + repr(layer) if layer else 'X'} holds values "
                               f"that are not integers (e.g. {example:.4g}), so not raw counts, which every task "
                               "normalises itself (log-normalised data would be normalised twice). Expected: the raw "
                               "counts (--layer NAME for a layer that holds them), or --not-counts for count-like "
                               "values that are not integers (volume-normalised, as MERFISH)")
    if "slice" not in adata.obs:
        adata.obs["slice"] = path.stem
    sha = file_sha256(path)
    # the file's stem and the start of its sha256: a user's file never takes a registered
    # dataset's name, and two different files of one name are never averaged together
    name = f"{path.stem}-{sha[:8]}"
    validate_adata(adata, name, label_key)
    slices = tuple(pd.unique(adata.obs["slice"].astype(str)))
    platform = str(adata.uns.get("platform", "unknown"))
    grid = {"array_row", "array_col"} <= set(adata.obs)
    spec = DatasetSpec(
        name=name, version="user", platform=platform,
        organism="unknown", tissue="unknown", slices=slices, label_key=label_key,
        source={"url": str(path.resolve())}, filename=path.name,
        grid_columns=("array_row", "array_col") if grid else None,
        # a Visium array is hexagonal (array_col steps by 2): mapped to the lattice as the
        # registered Visium slices are
        grid_kind=("visium_hex" if "visium" in platform.lower() else "square") if grid else None,
        integer_counts=counts,
    )
    return Dataset(spec, _normalise(adata), sha)
