"""The small spatial plot logged with each cell: truth beside prediction (SPEC §7).

The task says what to draw (``Task.spatial_map``); this module only draws it,
the same way for every method, so plots compare at a glance on the leaderboard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stbench.tasks import get_task


def spatial_plot(problem, output, path: Path) -> Path | None:
    """Write a PNG of ``problem``'s truth and the method's ``output``; None where no map applies."""
    spec = get_task(problem.task).spatial_map(problem, output)
    if spec is None:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2), dpi=72, sharex=True, sharey=True)
    size = max(1.0, 4000.0 / max(len(spec["xy"]), 1))
    if spec["kind"] == "alignment":
        for ax, xy, name in zip(axes, (spec["xy"], spec["prediction"]), ("true placement", "aligned")):
            ref = spec["reference_xy"]
            ax.scatter(ref[:, 0], ref[:, 1], s=size, c="0.8", linewidths=0)
            ax.scatter(xy[:, 0], xy[:, 1], s=size, c=np.arange(len(xy)), cmap="viridis", linewidths=0)
            ax.set_title(name, fontsize=9)
    else:
        if spec["kind"] == "categorical":
            # colour by category code; predicted clusters get their own codes
            values = [np.unique(v, return_inverse=True)[1] for v in (spec["truth"], spec["prediction"])]
            kw = {"cmap": "tab20"}
        else:
            values = [spec["truth"], spec["prediction"]]
            lo, hi = np.percentile(np.concatenate(values), [1, 99])
            kw = {"cmap": "magma", "vmin": lo, "vmax": hi}
        for ax, v, name in zip(axes, values, ("truth", "prediction")):
            ax.scatter(spec["xy"][:, 0], spec["xy"][:, 1], c=v, s=size, linewidths=0, **kw)
            ax.set_title(name, fontsize=9)
    axes[0].invert_yaxis()  # image convention (y down), as scanpy draws; the axes share y
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{problem.task}/{problem.split} {problem.dataset}:{problem.instance} - {spec['title']}",
                 fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.82, wspace=0.05)  # tight_layout costs 30 ms
    fig.savefig(path)
    plt.close(fig)
    return path
