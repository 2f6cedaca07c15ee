"""The dataset registry: what each dataset is, where it comes from, its checksum.

A dataset is one or more slices in one AnnData (SPEC §2.1). Real datasets are
`.h5ad` files looked up in a data directory and verified against the sha256
recorded here before anything reads them; `synthetic` is generated in process
and hashed from its content.

Which slices, groups or pairs each *task* runs on is declared by the task
(``tasks/<task>.py``: ``DATASETS``); the dataset only lists what it contains.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from stbench.errors import UnknownNameError


@dataclass(frozen=True)
class DatasetSpec:
    """Metadata of one registered dataset (SPEC §2.2)."""

    name: str
    version: str
    platform: str
    organism: str
    tissue: str
    slices: tuple[str, ...]
    label_key: str | None
    source: dict = field(default_factory=dict)  # paper, doi, url, licence, origin
    filename: str | None = None  # None: generated in process (synthetic)
    sha256: str | None = None
    # Integer array grid (row column, col column) and how it maps to a square
    # lattice: "square" (used as is) or "visium_hex" (row, col // 2; see tasks).
    grid_columns: tuple[str, str] | None = None
    grid_kind: str | None = None
    # Slices whose `spatial` frames are directly comparable, so a known transform
    # gives an exact alignment answer (synthetic, MERFISH z-planes).
    frames_aligned: bool = False
    # obsm key of an external registration of every slice onto the first slice of its
    # group (HER2ST: the authors' ``spatial_warped``), a second reference for alignment.
    registration: str | None = None
    # False for volume-normalised values (MERFISH): binomial thinning needs integer counts.
    integer_counts: bool = True
    # Generated datasets (filename None): keyword arguments of ``simulate_tissue`` (seed 0).
    simulate: dict = field(default_factory=dict)
    description: str = ""

    @property
    def has_grid(self) -> bool:
        return self.grid_columns is not None


_DLPFC_SOURCE = {
    "paper": "Maynard KR et al. Transcriptome-scale spatial gene expression in the human "
    "dorsolateral prefrontal cortex. Nat Neurosci 24, 425-436 (2021).",
    "doi": "10.1038/s41593-020-00787-0",
    "url": "http://spatial.libd.org/spatialLIBD/ (counts as assembled from prabhakarlab/Banksy "
    "data/dlpfc15167*.rda; labels from LieberInstitute/HumanPilot)",
    "licence": "Artistic-2.0 (spatialLIBD); MIT (Banksy repository at the commits used)",
}

DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is registered twice")
    DATASETS[spec.name] = spec
    return spec


# The benchmark tissue's difficulty (version 2): markers of 1.0 log units rather than 1.4,
# a batch effect of sd 0.6 rather than 0.35, and a tenth of the depth (about 0.5 counts per
# gene and spot, Visium-like sparsity). At version 1's settings non-spatial PCA + k-means beat
# spatially smoothed PCA on domains (ARI 0.67 vs 0.60) and unintegrated PCA tied Harmony on
# integration (0.685 vs 0.681): the sanity tissue did not reward what the tasks are about.
BENCHMARK_TISSUE = {"marker_effect": 1.0, "batch_strength": 0.6, "depth": 0.1}

register_dataset(DatasetSpec(
    name="synthetic",
    version="2",
    platform="synthetic (square grid)",
    organism="none",
    tissue="simulated layered tissue with blobs",
    slices=("slice0", "slice1", "slice2"),
    label_key="domain",
    source={"paper": "stbench built-in simulator (stbench.datasets.synthetic)", "licence": "MIT"},
    grid_columns=("array_row", "array_col"),
    grid_kind="square",
    frames_aligned=True,
    simulate=dict(BENCHMARK_TISSUE),
    description="3 slices of about 1,600 spots x 300 genes related by known rigid transforms; "
    "5 curved layers + 2 blobs; zero-inflated negative-binomial counts; per-slice batch effects.",
))

register_dataset(DatasetSpec(
    name="synthetic_partial",
    version="2",
    platform="synthetic (square grid)",
    organism="none",
    tissue="the simulated tissue; the second slice keeps about 60 % of it (a half-plane cut)",
    slices=("slice0", "slice1"),
    label_key="domain",
    source={"paper": "stbench built-in simulator (stbench.datasets.synthetic)", "licence": "MIT"},
    grid_columns=("array_row", "array_col"),
    grid_kind="square",
    frames_aligned=True,
    simulate={**BENCHMARK_TISSUE, "n_slices": 2, "overlap": 0.6},
    description="2 slices of the built-in tissue related by a known rigid transform; the second covers "
    "about 60 % of the first (partial overlap, for partial aligners such as PASTE2).",
))

register_dataset(DatasetSpec(
    name="dlpfc",
    version="1",
    platform="10x Visium",
    organism="human",
    tissue="dorsolateral prefrontal cortex (donor 3, Br8100)",
    slices=("151673", "151674", "151675", "151676"),
    label_key="domain",
    source=_DLPFC_SOURCE,
    filename="dlpfc_donor3.h5ad",
    sha256="bc2e68a20a802372d8e6fb7d5780f4f40daad1d3e7a200301d1d03014001a213",
    grid_columns=("array_row", "array_col"),
    grid_kind="visium_hex",
    description="14,364 spots x 3,851 genes, layer annotation Layer1-6/WM.",
))

register_dataset(DatasetSpec(
    name="dlpfc_7k",
    version="1",
    platform="10x Visium",
    organism="human",
    tissue="dorsolateral prefrontal cortex (donor 3, Br8100)",
    slices=("151673", "151675", "151676"),
    label_key="domain",
    source=_DLPFC_SOURCE,
    filename="dlpfc_donor3_3slices_7k.h5ad",
    sha256="d0e04ac821fb907d1a60ade94a71f60b5e746e388e8f5e8a39d5267914732d1a",
    grid_columns=("array_row", "array_col"),
    grid_kind="visium_hex",
    description="10,691 spots x 7,363 genes (larger panel: HVG selection inside the benchmark matters).",
))

register_dataset(DatasetSpec(
    name="merfish_hypothalamus",
    version="1",
    platform="MERFISH",
    organism="mouse",
    tissue="hypothalamic preoptic region (animal 1, 2 z-planes)",
    slices=("bregma_0.26", "bregma_0.21"),
    label_key="cell_type",
    source={
        "paper": "Moffitt JR et al. Molecular, spatial, and functional single-cell profiling of the "
        "hypothalamic preoptic region. Science 362, eaau5324 (2018).",
        "doi": "10.1126/science.aau5324",
        "url": "https://doi.org/10.5061/dryad.8t8s248 (as packaged in prabhakarlab/Banksy data/hypothalamus.rda)",
        "licence": "CC0 (Dryad)",
    },
    filename="merfish_hypothalamus_2slices.h5ad",
    sha256="19434c828597d5163c944745d7c4c0dcf7fd194d569e058b7a9fdf1a31fa2136",
    frames_aligned=True,
    integer_counts=False,
    description="11,162 cells x 161 genes (volume-normalised, non-integer values), 16 cell classes.",
))

register_dataset(DatasetSpec(
    name="starmap_mpfc",
    version="1",
    platform="STARmap",
    organism="mouse",
    tissue="medial prefrontal cortex (3 animals)",
    slices=("20180417_BZ5_control", "20180419_BZ9_control", "20180424_BZ14_control"),
    label_key="domain",
    source={
        "paper": "Wang X et al. Three-dimensional intact-tissue sequencing of single-cell "
        "transcriptional states. Science 361, eaat5691 (2018).",
        "doi": "10.1126/science.aat5691",
        "url": "https://github.com/zhengli09/BASS-Analysis (data/starmap_mpfc.RData)",
        "licence": "not stated for the data (released with the paper)",
    },
    filename="starmap_mpfc_3slices.h5ad",
    sha256="033408aa56ce14a3dade5fd22ae415ea786955d6fdba4ca6057f71d34a9b714a",
    description="3,190 cells x 166 genes, cortical layers L1, L2/3, L5, L6.",
))

register_dataset(DatasetSpec(
    name="her2st",
    version="1",
    platform="Spatial Transcriptomics (legacy ST)",
    organism="human",
    tissue="HER2-positive breast tumours (8 patients, 36 sections)",
    slices=tuple(f"{p}{i}" for p in "ABCD" for i in range(1, 7))
    + tuple(f"{p}{i}" for p in "EFGH" for i in range(1, 4)),
    label_key="domain",
    registration="spatial_warped",
    source={
        "paper": "Andersson A et al. Spatial deconvolution of HER2-positive breast cancer reveals "
        "novel intercellular relationships. Nat Commun 12, 6012 (2021).",
        "doi": "10.1038/s41467-021-26271-2",
        "url": "https://github.com/almaan/her2st (as in raphael-group/paste_reproducibility data/HER2/)",
        "licence": "not stated (released with the paper)",
    },
    filename="her2st_breast_36slices.h5ad",
    sha256="6e06c490b2dd7cc5b7f2f529130a980dba54f4cabeb04937e1b892a32df6ce2f",
    grid_columns=("array_y", "array_x"),
    grid_kind="square",
    description="13,620 spots x 3,000 genes; pathologist labels on 8 sections; author registration "
    "in obsm['spatial_warped'].",
))


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, DATASETS) from None


def default_data_dir() -> Path:
    """--data-dir is handled by the caller; then $STBENCH_DATA, then ~/.cache/stbench/data."""
    env = os.environ.get("STBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/stbench/data").expanduser()
