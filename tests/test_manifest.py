"""The manifest: method and task metadata read without importing adapters, tasks or torch."""

import json
import subprocess
import sys

import pytest

from stbench import manifest
from stbench.errors import StbenchError


def test_the_manifest_says_what_the_code_says():
    """manifest.json is written from the adapters and tasks; it must not drift from them."""
    current = json.loads(json.dumps(manifest.build(), default=str))
    assert current == manifest.load(), "manifest.json is stale: run python -m stbench.manifest --write"


@pytest.mark.parametrize("code", [
    "from stbench.cli import main; main(['list', 'methods']); main(['list', 'tasks'])",
    "from stbench.cli import main; main(['run', '--methods', 'no_such_method'])",
    "import stbench.leaderboard.app, stbench.leaderboard.compare, stbench.leaderboard.publish",
])
def test_listing_name_errors_and_the_board_import_no_adapter_and_no_torch(code):
    probe = (f"import sys\n{code}\nbad = sorted(m for m in sys.modules if m == 'torch' or "
             "m.startswith('stbench.methods.') or m.startswith('stbench.tasks.'))\nprint('LOADED', bad)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in out.stdout, out.stdout[-500:] + out.stderr[-2000:]


def test_parameters_are_checked_by_name_and_type_with_the_defaults_listed():
    defaults = {"k": 6, "alpha": 0.5, "weights": "distance", "exact": True, "n_pcs": None}
    manifest.check_params("m", {"k": 3, "alpha": 1, "exact": False, "n_pcs": 20}, defaults)  # int for a float: fine
    with pytest.raises(StbenchError, match=r"method 'm' has no parameter 'kk'.*k=6, alpha=0.5"):
        manifest.check_params("m", {"kk": 1}, defaults)
    with pytest.raises(StbenchError, match=r"k=1.5 is a float; Expected a int like its default k=6"):
        manifest.check_params("m", {"k": 1.5}, defaults)
    with pytest.raises(StbenchError, match="exact=1 is a int; Expected a bool"):
        manifest.check_params("m", {"exact": 1}, defaults)


def test_run_refuses_a_misspelt_parameter_before_running_anything(tmp_path, capsys):
    from stbench.cli import main

    assert main(["run", "--methods", "knn_interpolation:kk=1", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "has no parameter 'kk'" in err and "k=6" in err and not (tmp_path / "r").exists()


def test_variants_are_named_in_full():
    assert manifest.variant_name("knn", {"k": 1, "w": "u"}, {"k": 6, "w": "u"}) == "knn:k=1"
    assert manifest.variant_name("knn", {"k": 6}, {"k": 6}, "2", "1") == "knn@2"
