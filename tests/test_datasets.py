"""Registry, checksums, data-dir lookup, and the bad-input errors of SPEC §10 for datasets."""

import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stbench.errors import ChecksumError, DataNotFoundError, DatasetError, UnknownNameError
from stbench.datasets.loading import load_dataset, load_user_dataset, validate_adata
from stbench.datasets.registry import DATASETS, get_dataset_spec
from stbench.tasks import TASKS


def test_registry_metadata_is_complete():
    assert {"synthetic", "dlpfc", "dlpfc_7k", "merfish_hypothalamus", "starmap_mpfc", "her2st"} <= set(DATASETS)
    for spec in DATASETS.values():
        assert spec.platform and spec.organism and spec.tissue and spec.slices
        assert spec.source.get("paper") and spec.source.get("licence")
        if spec.filename:
            assert len(spec.sha256) == 64
    for task in TASKS.values():  # the tasks say which datasets they run on; the dataset only what it holds
        for name in task.DATASETS:
            assert name in DATASETS, f"{task.name} declares an unregistered dataset {name!r}"
            for inst in task.instances(DATASETS[name]):
                for s in inst.replace(">", "+").split("+"):
                    assert s in DATASETS[name].slices, f"{task.name}: {name} has no slice {s}"


def test_unknown_dataset_name():
    with pytest.raises(UnknownNameError, match="unknown dataset 'nope'.*synthetic"):
        get_dataset_spec("nope")


def test_missing_file_says_where_it_comes_from_and_where_to_put_it(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("starmap_mpfc", tmp_path)
    msg = str(err.value)
    assert "starmap_mpfc_3slices.h5ad" in msg and str(tmp_path) in msg and "BASS-Analysis" in msg


def test_wrong_checksum_names_file_and_both_hashes(tmp_path, data_dir):
    spec = get_dataset_spec("starmap_mpfc")
    target = tmp_path / spec.filename
    shutil.copy(data_dir / spec.filename, target)
    with open(target, "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ChecksumError) as err:
        load_dataset("starmap_mpfc", tmp_path)
    assert spec.filename in str(err.value) and spec.sha256 in str(err.value)


@pytest.mark.realdata
def test_real_datasets_load_with_their_checksums(data_dir):
    for name in ["dlpfc", "starmap_mpfc", "merfish_hypothalamus"]:
        ds = load_dataset(name, data_dir)
        assert ds.sha256 == ds.spec.sha256
        assert set(ds.adata.obs["slice"].astype(str)) == set(ds.spec.slices)


def good_adata(n=20):
    rng = np.random.default_rng(0)
    a = ad.AnnData(X=sp.csr_matrix(rng.poisson(1.0, (n, 5)).astype(np.float32)),
                   obs=pd.DataFrame({"slice": "s", "domain": ["a", "b"] * (n // 2)}, index=[f"c{i}" for i in range(n)]),
                   var=pd.DataFrame(index=[f"g{j}" for j in range(5)]))
    a.obsm["spatial"] = rng.random((n, 2))
    return a


@pytest.mark.parametrize("breakage, message", [
    (lambda a: a.obsm.pop("spatial"), "no coordinates"),
    (lambda a: a.obsm.__setitem__("spatial", np.where(np.arange(40).reshape(20, 2) == 3, np.nan, 1.0)),
     "NaN or infinite coordinates"),
    (lambda a: setattr(a, "obs_names", ["dup"] * 20), "obs_names must be unique"),
    (lambda a: setattr(a, "X", sp.csr_matrix(-np.ones((20, 5), np.float32))), "non-negative counts"),
    # the bad files of issue 21 that used to be a traceback or silently accepted
    (lambda a: a.obsm.__setitem__("spatial", np.array([["a", "b"]] * 20)), r"holds <U1 values; expected numbers"),
    (lambda a: a.obsm.__setitem__("spatial", np.full((20, 2), 1e302)), "reaches 1e\\+302"),
    (lambda a: a.obsm.__setitem__("spatial", np.ones((20, 2))), "every spot is at the same coordinates"),
    (lambda a: a.obs.__setitem__("array_row", [np.nan] + list(range(19))), r"obs\['array_row'\] must hold an integer"),
    (lambda a: a.obs.__setitem__("domain", np.nan), "has no label"),
    (lambda a: a.obs.__setitem__("domain", "a"), "has one class"),
    (lambda a: setattr(a, "X", sp.csr_matrix((20, 5), dtype=np.float32)), "X is all zeros"),
    (lambda a: setattr(a, "X", sp.csr_matrix(np.full((20, 5), 1e308))), "X reaches 1e\\+308"),
])
def test_malformed_dataset_gets_one_clear_error(breakage, message):
    a = good_adata()
    breakage(a)
    with pytest.raises(DatasetError, match=message):
        validate_adata(a, "mine", "domain")


def test_too_few_spots_and_no_genes():
    with pytest.raises(DatasetError, match="has 2 spots; expected at least 10"):
        validate_adata(good_adata()[:2].copy(), "mine", None)
    with pytest.raises(DatasetError, match="has no genes"):
        validate_adata(good_adata()[:, []].copy(), "mine", "domain")


@pytest.mark.parametrize("content, name", [(b"", "empty.h5ad"), (b"spot,x,y\nc0,1,2\n", "table.csv"),
                                           (None, "truncated.h5ad"), ("hdf5", "plain.h5ad")])
def test_a_file_that_is_not_an_h5ad_is_one_clear_error(tmp_path, content, name):
    path = tmp_path / name
    if content is None:  # a real .h5ad cut in half
        good_adata().write_h5ad(tmp_path / "whole.h5ad")
        data = (tmp_path / "whole.h5ad").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "hdf5":  # an HDF5 file that is not an AnnData
        import h5py

        with h5py.File(path, "w") as fh:
            fh["numbers"] = np.arange(5)
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match="could not be read as an AnnData .h5ad file|no coordinates"):
        load_user_dataset(path, "domain")


def test_non_integer_values_are_refused_unless_a_count_layer_or_not_counts_is_said(tmp_path):
    """Log-normalised X (what used to run 14 cells ok on data normalised twice) is one error that
    says what to do; --layer picks the raw counts; --not-counts accepts count-like values and
    skips the thinning split, which needs integers."""
    from stbench.tasks import get_task

    a = good_adata()
    a.layers["counts"] = a.X.copy()
    a.X = sp.csr_matrix(np.log1p(a.X.toarray()))
    path = tmp_path / "lognorm.h5ad"
    a.write_h5ad(path)
    with pytest.raises(DatasetError, match="not integers .*--layer NAME .*--not-counts"):
        load_user_dataset(path, "domain")
    assert load_user_dataset(path, "domain", layer="counts").adata.X.max() == a.layers["counts"].max()
    loose = load_user_dataset(path, "domain", counts=False)
    assert not loose.spec.integer_counts and not get_task("denoising").applies(loose.spec, "thinning")
    with pytest.raises(DatasetError, match="has no layer 'raw'"):
        load_user_dataset(path, "domain", layer="raw")


def test_the_run_says_what_a_user_file_skips_and_why(tmp_path):
    from stbench.cli import user_file_gaps

    path = tmp_path / "one.h5ad"
    good_adata().write_h5ad(path)
    gaps = "\n".join(user_file_gaps(load_user_dataset(path, "domain").spec, None))
    assert "skips multislice_integration (it needs several slices" in gaps
    assert "skips alignment (it needs several slices" in gaps
    assert "skips spatial_imputation / lattice2x (no array grid" in gaps


def test_a_user_file_never_takes_a_registered_name(tmp_path):
    """A file named synthetic.h5ad is recorded as synthetic-<sha8>, never merged with the built-in tissue."""
    path = tmp_path / "synthetic.h5ad"
    good_adata().write_h5ad(path)
    ds = load_user_dataset(path, "domain")
    assert ds.spec.name == f"synthetic-{ds.sha256[:8]}" and ds.spec.name != "synthetic"


@pytest.mark.realdata
def test_a_users_visium_file_maps_to_the_lattice_as_the_registered_slices_do(tmp_path, data_dir):
    """DLPFC 151673 written out as a user's file (array_row/array_col, uns platform Visium): the
    lattice2x split holds out the same share of spots as on the registered slice."""
    from stbench.tasks import get_task

    registered = load_dataset("dlpfc", data_dir)
    one = registered.adata[registered.adata.obs["slice"].astype(str) == "151673"].copy()
    one.uns["platform"] = "10x Visium"
    path = tmp_path / "my_visium.h5ad"
    one.write_h5ad(path)
    user = load_user_dataset(path, "domain")
    assert user.spec.grid_kind == "visium_hex"
    task = get_task("spatial_imputation")
    shares = []
    for ds, instance in ((registered, "151673"), (user, "151673")):
        held = task.make_split(ds, instance, "lattice2x", 0)["heldout"]
        shares.append(len(held) / ds.slice(instance).n_obs)
    assert shares[0] == pytest.approx(shares[1]) and 0.7 < shares[0] < 0.8, shares


def test_missing_label_column():
    with pytest.raises(DatasetError, match=r"label column obs\['cell_class'\] does not exist"):
        validate_adata(good_adata(), "mine", "cell_class")


def test_user_dataset_file_is_validated_and_hashed(tmp_path):
    path = tmp_path / "mine.h5ad"
    good_adata().write_h5ad(path)
    ds = load_user_dataset(path, "domain")
    assert ds.spec.name == f"mine-{ds.sha256[:8]}" and len(ds.sha256) == 64
    bad = good_adata()
    del bad.obsm["spatial"]
    bad.write_h5ad(tmp_path / "bad.h5ad")
    with pytest.raises(DatasetError, match="no coordinates"):
        load_user_dataset(tmp_path / "bad.h5ad")
