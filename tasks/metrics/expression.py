"""Expression metrics: errors over entries and correlations per spot / per gene.

``truth`` and ``pred`` are (spots x genes) arrays (sparse is accepted and
densified). "Per spot" metrics compute one value per row across genes and
average over rows; "_gene" variants do the same per column across spots. A
constant row (or column) scores 0, never NaN.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from stbench.tasks.metrics import metric

INF = float("inf")


def dense(a) -> np.ndarray:
    return np.asarray(a.toarray() if sp.issparse(a) else a, dtype=np.float64)


@metric("mae", higher_is_better=False, range=(0, INF))
def mae(truth, pred) -> float:
    """MAE = mean_{i,j} |y_ij - yhat_ij| over all scored entries, zeros included."""
    return float(np.mean(np.abs(dense(truth) - dense(pred))))


@metric("mse", higher_is_better=False, range=(0, INF))
def mse(truth, pred) -> float:
    """MSE = mean_{i,j} (y_ij - yhat_ij)^2 over all scored entries, zeros included."""
    return float(np.mean((dense(truth) - dense(pred)) ** 2))


@metric("mae_nz", higher_is_better=False, range=(0, INF))
def mae_nz(truth, pred) -> float:
    """MAE over the entries whose truth is > 0 (NaN if there are none)."""
    t, p = dense(truth), dense(pred)
    nz = t > 0
    return float(np.mean(np.abs(t[nz] - p[nz]))) if nz.any() else float("nan")


@metric("mse_nz", higher_is_better=False, range=(0, INF))
def mse_nz(truth, pred) -> float:
    """MSE over the entries whose truth is > 0 (NaN if there are none)."""
    t, p = dense(truth), dense(pred)
    nz = t > 0
    return float(np.mean((t[nz] - p[nz]) ** 2)) if nz.any() else float("nan")


def _rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = np.einsum("ij,ij->i", a, b)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    out = np.zeros(len(a))
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _rowwise_cosine(a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True))


def _rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _rowwise_pearson(rankdata(a, axis=1), rankdata(b, axis=1))


@metric("cosine", higher_is_better=True, range=(-1, 1))
def cosine(truth, pred) -> float:
    """mean_i cos(y_i, yhat_i) = mean_i <y_i, yhat_i> / (|y_i| |yhat_i|), per spot i; 0 for a zero row."""
    return float(_rowwise_cosine(dense(truth), dense(pred)).mean())


@metric("pearson", higher_is_better=True, range=(-1, 1))
def pearson(truth, pred) -> float:
    """mean_i corr(y_i, yhat_i): cosine of the row-centred rows, per spot; 0 for a constant row."""
    return float(_rowwise_pearson(dense(truth), dense(pred)).mean())


@metric("spearman", higher_is_better=True, range=(-1, 1))
def spearman(truth, pred) -> float:
    """mean_i of the Pearson correlation of the ranks (average ties) of y_i and yhat_i, per spot."""
    return float(_rowwise_spearman(dense(truth), dense(pred)).mean())


@metric("cosine_gene", higher_is_better=True, range=(-1, 1))
def cosine_gene(truth, pred) -> float:
    """mean_j cos(y_j, yhat_j) over the columns (genes) j; 0 for a zero column."""
    return float(_rowwise_cosine(dense(truth).T, dense(pred).T).mean())


@metric("pearson_gene", higher_is_better=True, range=(-1, 1))
def pearson_gene(truth, pred) -> float:
    """mean_j corr(y_j, yhat_j) per gene across spots; 0 for a constant column."""
    return float(_rowwise_pearson(dense(truth).T, dense(pred).T).mean())


@metric("spearman_gene", higher_is_better=True, range=(-1, 1))
def spearman_gene(truth, pred) -> float:
    """mean_j Spearman correlation per gene across spots; 0 for a constant column."""
    return float(_rowwise_spearman(dense(truth).T, dense(pred).T).mean())


@metric("rmse_gene", higher_is_better=False, range=(0, INF))
def rmse_gene(truth, pred) -> float:
    """mean_j sqrt(mean_i (y_ij - yhat_ij)^2): the RMSE of each gene across spots, averaged over genes."""
    return float(np.sqrt(((dense(truth) - dense(pred)) ** 2).mean(axis=0)).mean())


@metric("pearson_gene_masked", higher_is_better=True, range=(-1, 1))
def pearson_gene_masked(truth, pred, mask) -> float:
    """mean_j corr(y_ij, yhat_ij) over the masked spots i of gene j; 0 for a gene constant there or with < 2 masked."""
    t, p, w = dense(truth), dense(pred), np.asarray(mask, dtype=np.float64)
    n = w.sum(axis=0)
    safe = np.maximum(n, 1)
    tc = (t - (w * t).sum(axis=0) / safe) * w
    pc = (p - (w * p).sum(axis=0) / safe) * w
    num = (tc * pc).sum(axis=0)
    den = np.sqrt((tc * tc).sum(axis=0) * (pc * pc).sum(axis=0))
    ok = (den > 0) & (n >= 2)
    out = np.zeros(t.shape[1])
    out[ok] = num[ok] / den[ok]
    return float(out.mean())


POISSON_EPS = 1e-8  # Open Problems' epsilon: a zero rate where molecules were counted costs ~18 per count


@metric("poisson_deviance", higher_is_better=False, range=(0, INF))
def poisson_deviance(counts, pred_log, depth) -> float:
    """mean_ij [x_ij log(x_ij / lam_ij) - x_ij + lam_ij], lam_ij = expm1(yhat_ij) depth_i / 1e4: Poisson deviance of target counts.

    ``pred_log`` is a prediction on the log1p(normalise-to-1e4) scale; ``depth``
    is each spot's library size of the target, so lam is the prediction
    rescaled to the depth of the counts ``x`` it is scored against. It is the
    Poisson negative log-likelihood (Batson et al. 2019's molecular
    cross-validation loss; Open Problems' ``poisson``) minus its minimum, so a
    perfect prediction scores 0; ``x`` may also be expected counts (true rates),
    where it is the Poisson KL divergence. ``lam + 1e-8`` inside the log.
    """
    from scipy.special import xlogy

    from stbench.datasets.preprocessing import TARGET_SUM

    x = dense(counts)
    lam = np.expm1(dense(pred_log)) * (np.asarray(depth, dtype=np.float64)[:, None] / TARGET_SUM)
    return float(np.mean(xlogy(x, x / (lam + POISSON_EPS)) - x + lam))


# The metrics of one truth/prediction pair of matrices, in the order tasks list them.
EXPRESSION_METRICS = ("mae", "mse", "rmse_gene", "mae_nz", "mse_nz", "cosine", "pearson", "spearman",
                      "cosine_gene", "pearson_gene", "spearman_gene")


def expression_scores(truth, pred, names=EXPRESSION_METRICS) -> dict[str, float]:
    """The registered expression metrics ``names`` of one pair, densified a single time."""
    from stbench.tasks.metrics import METRICS

    t, p = dense(truth), dense(pred)
    return {name: METRICS[name].fn(t, p) for name in names}
