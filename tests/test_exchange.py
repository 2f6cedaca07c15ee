"""The exchange file (benchmark/exchange.py): every task's input view and reference output comes
back equal, and what is not plain data is refused by name."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stbench.benchmark import exchange
from stbench.datasets.loading import load_dataset
from stbench.errors import ContractError
from stbench.tasks import INPUT_VIEWS, TASKS


def _dense(x):
    return None if x is None else (x.toarray() if sp.issparse(x) else np.asarray(x))


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_s_input_view_and_reference_output_round_trip(name):
    task, ds = TASKS[name], load_dataset("synthetic")
    problem = task.make_problem(ds, task.instances(ds.spec)[0], task.splits[0], 0)
    back = exchange.read(exchange.to_bytes(problem.inputs), 2**32, INPUT_VIEWS)
    assert type(back) is type(problem.inputs)
    for f in dataclasses.fields(problem.inputs):
        a, b = getattr(problem.inputs, f.name), getattr(back, f.name)
        if hasattr(a, "obs"):
            x, y = _dense(a.X), _dense(b.X)
            assert (x is None and y is None) or (np.array_equal(x, y) and x.dtype == y.dtype)
            pd.testing.assert_frame_equal(a.obs, b.obs)
            pd.testing.assert_frame_equal(a.var, b.var)
            assert set(a.obsm) == set(b.obsm) and all(np.array_equal(a.obsm[k], b.obsm[k]) for k in a.obsm)
            assert set(a.layers) == set(b.layers) and set(a.uns) == set(b.uns)
        else:
            assert a == b
    out = task.reference_output(problem)
    again = exchange.read(exchange.to_bytes(out), 2**32)
    pairs = [(out[k], again[k]) for k in out] if isinstance(out, dict) else [(out, again)]
    for x, y in pairs:
        assert (x is None and y is None) or np.array_equal(_dense(x), _dense(y))


def test_plain_values_come_back_as_they_were():
    obj = {"labels": pd.Series(["a", None, "b"], index=["x", "y", "z"]), "k": 3, "nan": float("nan"),
           "mixed": [1, 2.5, "s", None, True], "cat": pd.Series(pd.Categorical(["u", "v", "u"])),
           "csr": sp.csr_matrix(np.eye(3)), "tuple": (np.int64(4), np.float32(0.5))}
    back = exchange.read(exchange.to_bytes(obj), 10**6)
    pd.testing.assert_series_equal(back["labels"], obj["labels"])
    pd.testing.assert_series_equal(back["cat"], obj["cat"])
    assert back["k"] == 3 and np.isnan(back["nan"]) and back["mixed"] == obj["mixed"]
    assert (back["csr"] != obj["csr"]).nnz == 0 and back["tuple"] == (4, 0.5)


def test_what_is_not_data_or_too_big_is_refused():
    with pytest.raises(ContractError, match="is not data"):
        exchange.to_bytes({"f": lambda: 0})
    with pytest.raises(ContractError, match="duplicate column names"):
        exchange.to_bytes(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    big = exchange.to_bytes(np.zeros(1000))
    with pytest.raises(ContractError, match="over the 100 allowed"):
        exchange.read(big, 100)
    with pytest.raises(ContractError, match="not a readable exchange file"):
        exchange.read(b"not a zip", 100)
