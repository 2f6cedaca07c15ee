"""How good is `stbench board status`'s estimate? Leave-one-out on the board's own cells.

For every (task, dataset, method) of the peers and seeds on the committed board (or on the
board plus a results folder), its cells are removed, their wall time is estimated from the
rest, and the estimate is compared with what they took. Printed for the estimate with and
without the size model (``board.size_model``: a method's time on another dataset scaled by how
much slower that dataset is), so the two are measured side by side on the same cells.

    python scripts/board_estimate_check.py [RESULTS]
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from stbench.benchmark import board
from stbench.benchmark.store import ResultStore


def leave_one_out(table: pd.DataFrame, with_size_model: bool) -> pd.DataFrame:
    rows = []
    long = table[table["method_kind"].isin(("peer", "seed")) & (table["status"] == "ok")]
    for (task, dataset, method), cells in long.groupby(["task", "dataset", "method"]):
        rest = table.drop(cells.index)
        todo = cells.assign(state="missing", skip="")
        estimate = float(board.cell_estimates(rest, todo, scale_by_size=with_size_model).sum())
        rows.append(dict(task=task, dataset=dataset, method=method, cells=len(cells),
                         measured_s=float(cells["wall_time_s"].sum()), estimate_s=estimate))
    return pd.DataFrame(rows)


def main() -> None:
    table = board.read_board()
    if len(sys.argv) > 1:
        extra = ResultStore(sys.argv[1]).table()
        table = pd.concat([table, extra[~extra["cell_key"].isin(set(table["cell_key"]))]], ignore_index=True)
    both = leave_one_out(table, True).merge(leave_one_out(table, False),
                                            on=["task", "dataset", "method", "cells", "measured_s"],
                                            suffixes=("", "_without_size_model"))
    for col in ["estimate_s", "estimate_s_without_size_model"]:
        both[col.replace("estimate_s", "ratio")] = both[col] / both["measured_s"]
    print(both.round(2).to_string(index=False))
    for col in ["ratio", "ratio_without_size_model"]:
        err = np.abs(np.log2(both[col]))
        print(f"{col}: median factor off {2 ** err.median():.2f}x, worst {2 ** err.max():.1f}x, "
              f"total estimate / total measured {both[col.replace('ratio', 'estimate_s')].sum() / both['measured_s'].sum():.2f}"
              f" ({len(both)} task x dataset x method groups)")


if __name__ == "__main__":
    main()
