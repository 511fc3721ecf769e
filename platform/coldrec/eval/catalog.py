"""Catalogue metrics over the top-K lists a method recommends (beyond accuracy).

``topk``: (queries, K) catalog columns, best first (from :func:`coldrec.eval.ranking.top_k`);
``counts``: (items,) interactions per item in the training data of the protocol.

- coverage: share of the catalog recommended to at least one query.
- novelty: mean self-information -log2 p(i) of the recommended items, p(i) from training
  popularity with add-one smoothing, p(i) = (count_i + 1) / (sum(count) + n_items), so an
  item never seen in training has a finite (high) novelty.
- diversity (intra-list): mean over queries of the mean pairwise 1 - cos(v_i, v_j) between
  the recommended items' vectors; needs item vectors (one fixed space for every method: the
  untrained backbone's, see coldrec.eval.runner).
- popularity bias: share of recommended slots filled by the most popular 20% of items
  (the top ceil(0.2 * n_items) by training count, ties by catalog order).
"""

from __future__ import annotations

import math

import numpy as np

POPULAR_SHARE = 0.2


def coverage(topk: np.ndarray, n_items: int) -> float:
    return float(len(np.unique(topk)) / n_items) if topk.size else 0.0


def novelty(topk: np.ndarray, counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    p = (counts + 1.0) / (counts.sum() + len(counts))
    return float((-np.log2(p))[topk].mean()) if topk.size else 0.0


def popular_items(counts: np.ndarray, share: float = POPULAR_SHARE) -> np.ndarray:
    """(items,) bool: the most popular ``share`` of the catalog by training count."""
    n_top = math.ceil(share * len(counts))
    order = np.argsort(-np.asarray(counts), kind="stable")[:n_top]
    mask = np.zeros(len(counts), dtype=bool)
    mask[order] = True
    return mask


def popularity_bias(topk: np.ndarray, counts: np.ndarray, share: float = POPULAR_SHARE) -> float:
    return float(popular_items(counts, share)[topk].mean()) if topk.size else 0.0


def intra_list_diversity(topk: np.ndarray, item_vecs: np.ndarray, batch: int = 256) -> float:
    """Mean pairwise cosine distance within each list; item_vecs: (items, dim)."""
    if topk.size == 0 or topk.shape[1] < 2:
        return 0.0
    vecs = item_vecs / np.maximum(np.linalg.norm(item_vecs, axis=1, keepdims=True), 1e-12)
    k = topk.shape[1]
    total = 0.0
    for lo in range(0, len(topk), batch):
        v = vecs[topk[lo : lo + batch]]  # (b, k, dim)
        sims = np.einsum("bid,bjd->bij", v, v)  # (b, k, k)
        off_diag = sims.sum(axis=(1, 2)) - np.trace(sims, axis1=1, axis2=2)
        total += float((1.0 - off_diag / (k * (k - 1))).sum())
    return total / len(topk)


def catalog_metrics(topk: np.ndarray, counts: np.ndarray, ks: list[int],
                    item_vecs: np.ndarray | None = None) -> dict[str, float]:
    """Every catalogue metric at each K (lists cut from the longer ``topk``)."""
    out: dict[str, float] = {}
    for k in ks:
        lists = topk[:, :k]
        out[f"coverage@{k}"] = coverage(lists, len(counts))
        out[f"novelty@{k}"] = novelty(lists, counts)
        out[f"popularity_bias@{k}"] = popularity_bias(lists, counts)
        if item_vecs is not None:
            out[f"diversity@{k}"] = intra_list_diversity(lists, item_vecs)
    return out
