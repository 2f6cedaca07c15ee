"""Integration metrics on a joint embedding of several slices.

Clustering: k-means (k = number of true domains, 10 restarts, fixed seed) on
the embedding; ARI / NMI / CA pooled over all labelled spots and ARI per slice.
The same embedding is also clustered by a tied-covariance Gaussian mixture
(mclust's EEE, k-means initialised, fixed seed): ``ari_gmm`` / ``nmi_gmm`` /
``ca_gmm``.
Batch mixing: batch ASW as in scib (per true label, 1 - |silhouette of the
slice labels|, averaged). Label ASW: (silhouette of the true labels + 1) / 2.
Silhouettes are O(n^2): they use at most 5,000 labelled spots drawn with a
fixed seed.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_samples, silhouette_score

from stbench.tasks.metrics import metric
from stbench.tasks.metrics.labels import (CLUSTER_SEED, ari, ari_gmm, ca, ca_gmm, cluster_embedding,
                                          cluster_embedding_gmm, nmi, nmi_gmm)

ASW_MAX_SPOTS = 5000


def _subsample(n: int, cap: int = ASW_MAX_SPOTS) -> np.ndarray:
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(CLUSTER_SEED).choice(n, cap, replace=False))


@metric("batch_asw", higher_is_better=True, range=(0, 1))
def batch_asw(embedding, batches, labels) -> float:
    """mean over true labels c of mean_{i in c} (1 - |s_batch(i)|), s = silhouette within label c."""
    idx = _subsample(len(labels))
    emb, b, lab = np.asarray(embedding)[idx], np.asarray(batches).astype(str)[idx], np.asarray(labels).astype(str)[idx]
    scores = []
    for c in np.unique(lab):
        m = lab == c
        if len(np.unique(b[m])) < 2 or m.sum() <= len(np.unique(b[m])):
            continue
        scores.append(np.mean(1 - np.abs(silhouette_samples(emb[m], b[m]))))
    return float(np.mean(scores)) if scores else float("nan")


@metric("label_asw", higher_is_better=True, range=(0, 1))
def label_asw(embedding, labels) -> float:
    """(silhouette_score(embedding, true labels) + 1) / 2, Euclidean."""
    idx = _subsample(len(labels))
    lab = np.asarray(labels).astype(str)[idx]
    if len(np.unique(lab)) < 2:
        return float("nan")
    return float((silhouette_score(np.asarray(embedding)[idx], lab) + 1) / 2)


@metric("ari_per_slice", higher_is_better=True, range=(-0.5, 1))
def ari_per_slice(truth, pred, batches) -> float:
    """mean over slices s of ARI(truth, pred) within s: the joint clustering judged one slice at a time."""
    t, p, b = np.asarray(truth).astype(str), np.asarray(pred).astype(str), np.asarray(batches).astype(str)
    return float(np.mean([ari(t[b == s], p[b == s]) for s in np.unique(b)]))


@metric("ari_method_labels", higher_is_better=True, range=(-0.5, 1))
def ari_method_labels(truth, method_labels) -> float:
    """ARI of the labels the method returned itself, beside the task's clusterings of its embedding."""
    return ari(truth, method_labels)


def integration_scores(embedding, labels, batches, k: int) -> dict[str, float]:
    """All integration metrics for labelled spots (the task removes unlabelled ones first)."""
    emb = np.asarray(embedding, dtype=np.float64)
    lab, b = np.asarray(labels).astype(str), np.asarray(batches).astype(str)
    pred = cluster_embedding(emb, k)
    pred_gmm = cluster_embedding_gmm(emb, k)
    return {
        "ari": ari(lab, pred),
        "nmi": nmi(lab, pred),
        "ca": ca(lab, pred),
        "ari_gmm": ari_gmm(lab, pred_gmm),
        "nmi_gmm": nmi_gmm(lab, pred_gmm),
        "ca_gmm": ca_gmm(lab, pred_gmm),
        "ari_per_slice": ari_per_slice(lab, pred, b),
        "batch_asw": batch_asw(emb, b, lab),
        "label_asw": label_asw(emb, lab),
    }
