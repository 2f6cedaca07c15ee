"""The small spatial plot logged with each cell: truth beside prediction (SPEC §7).

The task says what to draw (``Task.spatial_map``); this module only draws it,
the same way for every method, so plots compare at a glance on the leaderboard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stbench.tasks import get_task


def match_to_truth(truth: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes for the predicted clusters that reuse the true domains' codes where a cluster is
    matched to a domain (Hungarian matching on the contingency table), so a correct cluster
    is drawn in its domain's colour; unmatched clusters get new codes. Returns the codes and
    the label of each code (the domain's name, or "cluster X" for an unmatched one)."""
    from scipy.optimize import linear_sum_assignment

    true_names, true_codes = np.unique(np.asarray(truth).astype(str), return_inverse=True)
    pred_names, pred_codes = np.unique(np.asarray(prediction).astype(str), return_inverse=True)
    table = np.zeros((len(pred_names), len(true_names)))
    np.add.at(table, (pred_codes, true_codes), 1)
    rows, cols = linear_sum_assignment(-table)
    mapping = dict(zip(rows, cols))
    labels = list(true_names)
    for p in range(len(pred_names)):
        if p not in mapping:
            mapping[p] = len(labels)
            labels.append(f"cluster {pred_names[p]}")
    return np.array([mapping[p] for p in pred_codes]), labels


def spatial_plot(problem, output, path: Path, method: str = "", score: str = "") -> Path | None:
    """Write a PNG of ``problem``'s truth and the method's ``output``; None where no map applies.

    Readable at a glance on the leaderboard: the method, seed and score in the title, a legend
    (domains) or a colour bar (expression), predicted domains drawn in the colours of the true
    domains they match, and dots sized to fill the slice.
    """
    spec = get_task(problem.task).spatial_map(problem, output)
    if spec is None:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.6), dpi=100, sharex=True, sharey=True)
    # dot area ~ the panel's area per spot, so a slice reads as a filled tissue, not a pale haze
    size = float(np.clip(60000.0 / max(len(spec["xy"]), 1), 2.0, 60.0))
    legend_handles = None
    if spec["kind"] == "alignment":
        for ax, xy, name in zip(axes, (spec["xy"], spec["prediction"]), ("true placement", "aligned")):
            ref = spec["reference_xy"]
            ax.scatter(ref[:, 0], ref[:, 1], s=size, c="0.82", linewidths=0, label="reference slice")
            ax.scatter(xy[:, 0], xy[:, 1], s=size * 0.6, c=np.arange(len(xy)), cmap="viridis", linewidths=0,
                       label="query spots (colour: spot order)")
            ax.set_title(name, fontsize=11)
        legend_handles = axes[1].get_legend_handles_labels()
    elif spec["kind"] == "categorical":
        pred_codes, labels = match_to_truth(spec["truth"], spec["prediction"])
        true_codes = np.unique(np.asarray(spec["truth"]).astype(str), return_inverse=True)[1]
        cmap = plt.get_cmap("tab20", max(len(labels), 2))
        for ax, v, name in zip(axes, (true_codes, pred_codes), ("truth", "prediction (matched to truth)")):
            ax.scatter(spec["xy"][:, 0], spec["xy"][:, 1], c=cmap(v), s=size, linewidths=0)
            ax.set_title(name, fontsize=11)
        from matplotlib.lines import Line2D

        shown = sorted(set(true_codes) | set(pred_codes))
        legend_handles = ([Line2D([], [], marker="o", ls="", color=cmap(c), markersize=7) for c in shown],
                          [labels[c] for c in shown])
    else:
        values = [spec["truth"], spec["prediction"]]
        lo, hi = np.percentile(np.concatenate(values), [1, 99])
        for ax, v, name in zip(axes, values, ("truth", "prediction")):
            points = ax.scatter(spec["xy"][:, 0], spec["xy"][:, 1], c=v, s=size, linewidths=0, cmap="magma",
                                vmin=lo, vmax=hi)
            ax.set_title(name, fontsize=11)
        bar = fig.colorbar(points, ax=axes, fraction=0.025, pad=0.02)
        bar.set_label(spec["title"], fontsize=9)
    axes[0].invert_yaxis()  # image convention (y down), as scanpy draws; the axes share y
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if legend_handles is not None:
        fig.legend(*legend_handles, loc="center right", fontsize=8, frameon=False, markerscale=1.2,
                   ncol=1 if len(legend_handles[1]) <= 16 else 2)
    head = " · ".join(x for x in (method, f"seed {problem.seed}", score) if x)
    fig.suptitle(f"{head}\n{problem.task}/{problem.split} {problem.dataset}:{problem.instance} - {spec['title']}",
                 fontsize=11)
    right = 0.8 if legend_handles is not None else 0.88
    fig.subplots_adjust(left=0.02, right=right, bottom=0.03, top=0.84, wspace=0.05)  # tight_layout costs 30 ms
    fig.savefig(path)
    plt.close(fig)
    return path
