"""What crosses between the runner and a cell: plain data in one file that cannot run code.

A cell's input view goes in and the method's output comes back as one *exchange file*: an
uncompressed zip holding ``tree.json`` (the structure: dicts, lists, numbers, strings, and
typed nodes for arrays, sparse matrices, pandas objects, AnnData and the tasks' input views)
and one ``.npy`` member per array. Nothing in it is pickle, so reading it never runs code:

* arrays are read with ``allow_pickle=False`` (no object arrays); an object array of
  strings is written as a unicode array, with a mask for ``None``;
* every member must be stored (no compression) and every array's header must describe exactly
  the bytes the member holds, checked *before* the array is allocated, and the members together
  may not exceed ``max_bytes``: a few hundred bytes cannot become gigabytes in the runner;
* typed nodes are a closed list; a dataclass is rebuilt only when it is one of the input view
  classes the caller names (the child reads inputs with the tasks' classes; the runner reads
  outputs with none).

Why not pickle with a restricted unpickler: the allowed modules (pandas, numpy) expose
functions such as ``pandas.read_pickle`` that load a second, unrestricted pickle. Why not
``.h5ad`` alone: outputs are also bare arrays, frames and dicts of them, and one format for
both directions means one reader to get right.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.errors import ContractError

TREE = "tree.json"
MAX_TREE_BYTES = 64 * 2**20
EXPECTED = ("numpy arrays (no object arrays other than strings), scipy.sparse matrices, pandas Series/"
            "DataFrames, AnnData, numbers, strings, None, and dicts/lists/tuples of them")


class _Writer:
    def __init__(self, zf: zipfile.ZipFile):
        self.zf, self.n = zf, 0

    def array(self, a: np.ndarray) -> dict:
        a = np.asarray(a)
        node: dict = {}
        if a.dtype.hasobject:
            flat = a.ravel()
            missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in flat], bool)
            present = flat[~missing]
            if all(isinstance(v, str) for v in present):
                a = np.array(["" if m else v for v, m in zip(flat, missing)], dtype=str).reshape(a.shape)
            elif all(isinstance(v, (int, float, np.number, bool, np.bool_)) for v in present):
                a = np.array([np.nan if m else float(v) for v, m in zip(flat, missing)], float).reshape(a.shape)
            else:
                kinds = sorted({type(v).__name__ for v in present})
                raise ContractError(f"an object array holds {', '.join(kinds)}, which is not data. Expected: {EXPECTED}")
            if missing.any():
                node["none"] = self.array(missing.reshape(a.shape))
        name = f"a{self.n}.npy"
        self.n += 1
        with self.zf.open(name, "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.ascontiguousarray(a), allow_pickle=False)
        return {"t": "array", "f": name, **node}

    def encode(self, obj: Any) -> Any:
        import anndata as ad

        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, (int, float)) and not isinstance(obj, bool):
            return {"t": "float", "v": repr(float(obj))} if isinstance(obj, float) and not np.isfinite(obj) else obj
        if isinstance(obj, np.generic):
            return self.encode(obj.item())
        if isinstance(obj, np.ndarray):
            return self.array(obj)
        if sp.issparse(obj):
            m = sp.csr_matrix(obj)
            return {"t": "csr", "shape": list(m.shape), "data": self.array(m.data), "indices": self.array(m.indices),
                    "indptr": self.array(m.indptr)}
        if isinstance(obj, pd.Categorical):
            return {"t": "categorical", "codes": self.array(obj.codes), "categories": self.encode(obj.categories),
                    "ordered": bool(obj.ordered)}
        if isinstance(obj, pd.Index):
            return {"t": "index", "values": self.values(obj), "name": self.encode(obj.name)}
        if isinstance(obj, pd.Series):
            return {"t": "series", "values": self.values(obj), "index": self.encode(obj.index),
                    "name": self.encode(obj.name)}
        if isinstance(obj, pd.DataFrame):
            if not obj.columns.is_unique:
                raise ContractError(f"a DataFrame has duplicate column names "
                                    f"{list(obj.columns[obj.columns.duplicated()])[:3]}. Expected: unique column names")
            return {"t": "frame", "columns": [[self.encode(c), self.values(obj[c])] for c in obj.columns],
                    "index": self.encode(obj.index)}
        if isinstance(obj, ad.AnnData):
            return {"t": "anndata", "X": self.encode(obj.X), "obs": self.encode(obj.obs), "var": self.encode(obj.var),
                    **{k: self.encode(dict(getattr(obj, k))) for k in ("obsm", "varm", "layers", "obsp", "uns")}}
        if isinstance(obj, dict):
            for k in obj:
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise ContractError(f"a dict key {k!r} is a {type(k).__name__}. Expected: str or int keys")
            return {"t": "dict", "items": [[k, self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            return {"t": type(obj).__name__, "items": [self.encode(v) for v in obj]}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {"t": "view", "class": f"{type(obj).__module__}.{type(obj).__qualname__}",
                    "fields": {f.name: self.encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
        raise ContractError(f"an object of type {type(obj).__module__}.{type(obj).__name__} is not data. "
                            f"Expected: {EXPECTED}")

    def values(self, values) -> dict:
        """A Series' or Index's values: categoricals keep their categories, the rest is an array."""
        if isinstance(values.dtype, pd.CategoricalDtype):
            return self.encode(pd.Categorical(values))
        return self.array(np.asarray(values))


def write(obj: Any, target) -> None:
    """Write ``obj`` as an exchange file to a path or a binary file object; ContractError names
    what is not data."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        tree = _Writer(zf).encode(obj)
        zf.writestr(TREE, json.dumps(tree))


def to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    write(obj, buf)
    return buf.getvalue()


class _Reader:
    def __init__(self, zf: zipfile.ZipFile, views: dict[str, type]):
        self.zf, self.views = zf, views

    def array(self, node: dict) -> np.ndarray:
        info = self.zf.getinfo(str(node["f"]))
        with self.zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                raise ContractError(f"array {info.filename} has .npy format version {version}. Expected 1.0 or 2.0")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh, max_header_size=10000)
            header = fh.tell()
            if dtype.hasobject:
                raise ContractError(f"array {info.filename} has dtype {dtype}; object arrays are not data")
            expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if expected != info.file_size:  # the header must describe exactly the bytes present
                raise ContractError(f"array {info.filename} claims shape {shape} of {dtype} ({expected:,} bytes) "
                                    f"but holds {info.file_size:,} bytes")
        with self.zf.open(info) as fh:
            a = np.lib.format.read_array(fh, allow_pickle=False)
        if "none" in node:  # strings or numbers with missing values: None restored
            missing = self.array(node["none"])
            a = a.astype(object)
            a[missing] = None
        return a

    def decode(self, node: Any) -> Any:
        import anndata as ad

        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or "t" not in node:
            raise ContractError(f"the exchange tree holds {str(node)[:80]!r}, which is not a node")
        t = node["t"]
        if t == "float":
            return float(node["v"])
        if t == "array":
            return self.array(node)
        if t == "csr":
            return sp.csr_matrix((self.array(node["data"]), self.array(node["indices"]), self.array(node["indptr"])),
                                 shape=tuple(int(s) for s in node["shape"]))
        if t == "categorical":
            return pd.Categorical.from_codes(self.array(node["codes"]), categories=self.decode(node["categories"]),
                                             ordered=bool(node["ordered"]))
        if t == "index":
            return pd.Index(self.decode(node["values"]), name=self.decode(node["name"]))
        if t == "series":
            return pd.Series(self.decode(node["values"]), index=self.decode(node["index"]), name=self.decode(node["name"]))
        if t == "frame":
            index = self.decode(node["index"])
            return pd.DataFrame({self.decode(c): pd.Series(self.decode(v), index=index)
                                 for c, v in node["columns"]}, index=index)
        if t == "anndata":
            adata = ad.AnnData(X=self.decode(node["X"]), obs=self.decode(node["obs"]), var=self.decode(node["var"]))
            for key in ("obsm", "varm", "layers", "obsp"):
                for k, v in self.decode(node[key]).items():
                    getattr(adata, key)[k] = v
            adata.uns.update(self.decode(node["uns"]))
            return adata
        if t == "dict":
            return {k: self.decode(v) for k, v in node["items"]}
        if t in ("list", "tuple"):
            items = [self.decode(v) for v in node["items"]]
            return items if t == "list" else tuple(items)
        if t == "view" and node.get("class") in self.views:
            return self.views[node["class"]](**{k: self.decode(v) for k, v in node["fields"].items()})
        raise ContractError(f"the exchange tree holds a node of type {str(t)[:40]!r}"
                            + (f" ({str(node.get('class'))[:80]})" if t == "view" else "") + f". Expected: {EXPECTED}")


def read(source, max_bytes: int, views: tuple[type, ...] = ()) -> Any:
    """Read an exchange file (path, bytes or binary file object). Refuses, with ContractError, a
    file that is not one, a compressed member, an array whose header does not match its bytes, an
    object array, a node type outside the list, and members that together pass ``max_bytes``.
    ``views``: the dataclasses that may be rebuilt (the tasks' input views); none by default."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > max_bytes:
                raise ContractError(f"the exchange file holds {total:,} bytes, over the {max_bytes:,} allowed")
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                    raise ContractError(f"member {info.filename[:80]!r} is compressed; exchange files are stored")
            if zf.getinfo(TREE).file_size > MAX_TREE_BYTES:
                raise ContractError(f"{TREE} is over {MAX_TREE_BYTES:,} bytes")
            tree = json.loads(zf.read(TREE))
            return _Reader(zf, {f"{c.__module__}.{c.__qualname__}": c for c in views}).decode(tree)
    except ContractError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, RecursionError, EOFError) as err:
        raise ContractError(f"not a readable exchange file ({type(err).__name__}: {str(err)[:200]})") from None
