"""The committed split hashes must not drift (SPEC §3)."""

import pytest

from stbench.benchmark.split_hashes import compute_split_hashes, drift, load_manifest


def test_synthetic_split_hashes_match_the_manifest():
    current, missing = compute_split_hashes(["synthetic"])
    assert not missing and len(current) >= 27
    assert drift(current, load_manifest()) == []


@pytest.mark.realdata
def test_real_split_hashes_match_the_manifest(data_dir):
    current, missing = compute_split_hashes(data_dir=data_dir)
    assert not missing
    manifest = load_manifest()
    assert set(current) == set(manifest), "a registered split is missing from (or extra to) split_hashes.json"
    assert drift(current, manifest) == []
