"""Feed `stbench run --dataset-file` malformed files and print what a user sees for each: the
message, the exit code, and whether the results folder stayed untouched (issue 21's table).

    python scripts/bad_files.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def good(n: int = 40) -> ad.AnnData:
    rng = np.random.default_rng(0)
    a = ad.AnnData(X=sp.csr_matrix(rng.poisson(2.0, (n, 8)).astype(np.float32)),
                   obs=pd.DataFrame({"domain": ["a", "b"] * (n // 2)}, index=[f"c{i}" for i in range(n)]),
                   var=pd.DataFrame(index=[f"g{j}" for j in range(8)]))
    a.obsm["spatial"] = rng.random((n, 2)) * 100
    return a


def with_(change):
    a = good()
    change(a)
    return a


CASES = {
    "no coordinates": lambda: with_(lambda a: a.obsm.pop("spatial")),
    "NaN coordinates": lambda: with_(lambda a: a.obsm["spatial"].__setitem__((0, 0), np.nan)),
    "infinite coordinates": lambda: with_(lambda a: a.obsm["spatial"].__setitem__((0, 0), np.inf)),
    "string coordinates": lambda: with_(lambda a: a.obsm.__setitem__("spatial", np.array([["1", "2"]] * 40))),
    "1-column coordinates": lambda: with_(lambda a: a.obsm.__setitem__("spatial", np.ones((40, 1)))),
    "3-column coordinates": lambda: with_(lambda a: a.obsm.__setitem__("spatial", np.random.rand(40, 3))),
    "coordinates near 1e302": lambda: with_(lambda a: a.obsm.__setitem__("spatial", np.random.rand(40, 2) * 1e302)),
    "all spots at one point": lambda: with_(lambda a: a.obsm.__setitem__("spatial", np.ones((40, 2)))),
    "duplicate spot names": lambda: with_(lambda a: setattr(a, "obs_names", ["x"] * 40)),
    "duplicate gene names": lambda: with_(lambda a: setattr(a, "var_names", ["g"] * 8)),
    "negative counts": lambda: with_(lambda a: setattr(a, "X", -a.X)),
    "NaN in X": lambda: with_(lambda a: setattr(a, "X", sp.csr_matrix(np.full((40, 8), np.nan, np.float32)))),
    "a count of 1e308": lambda: with_(lambda a: setattr(a, "X", sp.csr_matrix(np.full((40, 8), 1e308)))),
    "zero genes": lambda: good()[:, []].copy(),
    "all-zero matrix": lambda: with_(lambda a: setattr(a, "X", sp.csr_matrix((40, 8), dtype=np.float32))),
    "log-normalised values": lambda: with_(lambda a: setattr(a, "X", sp.csr_matrix(np.log1p(a.X.toarray())))),
    "missing label column": lambda: with_(lambda a: a.obs.pop("domain")),
    "all-NaN label column": lambda: with_(lambda a: a.obs.__setitem__("domain", np.nan)),
    "a single label class": lambda: with_(lambda a: a.obs.__setitem__("domain", "a")),
    "1 spot": lambda: good()[:1].copy(),
    "2 spots": lambda: good()[:2].copy(),
    "NaN in array_row": lambda: with_(lambda a: a.obs.update(pd.DataFrame(
        {"array_row": [np.nan] + list(range(39)), "array_col": list(range(40))}, index=a.obs_names)) or
        a.obs.__setitem__("array_row", [np.nan] + list(range(39))) or a.obs.__setitem__("array_col", range(40))),
}
FILES = {"empty file": b"", "truncated .h5ad": "truncated", "CSV named .h5ad": b"spot,x,y\nc0,1,2\n",
         "plain HDF5 (not AnnData)": "hdf5"}


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="stbench-badfiles-"))
    rows = []
    for name, make in [*CASES.items(), *FILES.items()]:
        path = root / (name.replace(" ", "_").replace("/", "") + ".h5ad")
        if callable(make):
            make().write_h5ad(path)
        elif make == "truncated":
            good().write_h5ad(root / "whole.h5ad")
            data = (root / "whole.h5ad").read_bytes()
            path.write_bytes(data[: len(data) // 2])
        elif make == "hdf5":
            import h5py

            with h5py.File(path, "w") as fh:
                fh["numbers"] = np.arange(5)
        else:
            path.write_bytes(make)
        results = root / f"results-{len(rows)}"
        out = subprocess.run([sys.executable, "-m", "stbench.cli", "run", "--dataset-file", str(path),
                              "--tasks", "domain_identification", "--results", str(results), "--quiet"],
                             capture_output=True, text=True, timeout=600)
        lines = [l for l in out.stderr.splitlines() if l.strip()]
        message = lines[-1] if lines else out.stdout.strip().splitlines()[-1]
        untouched = not results.exists() or not any(results.iterdir())
        rows.append({"file": name, "exit": out.returncode, "traceback": "Traceback" in out.stderr,
                     "results folder untouched": untouched, "message": message[:160]})
    table = pd.DataFrame(rows)
    with pd.option_context("display.max_colwidth", 160, "display.width", 250):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
