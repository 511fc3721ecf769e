"""Full-ranking accuracy for any number of held-out targets per query.

A *query* is one user at one moment (one row of an evaluation DataFrame); its targets
are the items held out for it: one in leave-one-out, possibly several in a time split.
``ranks[q]`` holds the 0-based rank of each of query q's targets in the ranking over
the whole catalog, ties broken by a fixed ``tie_order`` never in the target's favour
(the rule of :func:`coldrec.eval.metrics.target_ranks`).

Per query, with T targets and ranks r_t:
  Recall@K  = |{t: r_t < K}| / T
  HitRate@K = 1 if any r_t < K else 0
  NDCG@K    = sum_{r_t < K} 1/log2(r_t + 2)  /  sum_{i < min(T, K)} 1/log2(i + 2)
  MRR       = 1 / (min_t r_t + 1)
With one target these reduce to :func:`coldrec.eval.metrics.rank_metrics` (Recall = HitRate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def multi_target_ranks(scores: np.ndarray, targets: Sequence[np.ndarray], tie_order: np.ndarray) -> list[np.ndarray]:
    """Rank of every target of every query.

    scores: (queries, items); targets: per query, an int array of catalog columns;
    tie_order: (items,) fixed permutation ranks. Returns per query an int array aligned
    with its targets. Other targets of the same query count as items ranked ahead.
    """
    out: list[np.ndarray] = []
    for row, cols in zip(scores, targets):
        cols = np.asarray(cols, dtype=np.int64)
        t_scores = row[cols][:, None]  # (T, 1)
        greater = (row[None, :] > t_scores).sum(axis=1)
        tied = ((row[None, :] == t_scores) & (tie_order[None, :] < tie_order[cols][:, None])).sum(axis=1)
        out.append((greater + tied).astype(np.int64))
    return out


def top_k(scores: np.ndarray, k: int, tie_order: np.ndarray) -> np.ndarray:
    """(queries, k) catalog columns of the k best items, ties ordered by ``tie_order``.

    Columns are laid out in tie order first, so a stable sort on the score keeps that
    order among equal scores: the same order :func:`multi_target_ranks` counts.
    """
    k = min(k, scores.shape[1])
    perm = np.argsort(tie_order, kind="stable")  # column at tie position p
    order = np.argsort(-scores[:, perm], axis=1, kind="stable")[:, :k]  # (queries, k)
    return perm[order]


def _ideal_dcg(n_targets: np.ndarray, k: int) -> np.ndarray:
    discounts = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))  # idcg for 1..k relevant items
    return discounts[np.minimum(n_targets, k) - 1]


def per_query_metrics(ranks: Sequence[np.ndarray], ks: Sequence[int]) -> dict[str, np.ndarray]:
    """One value per query for recall@K, hit@K, ndcg@K (each K) and mrr.

    A query without targets (empty array) gets NaN everywhere, so a caller can drop it
    with :func:`mean_metrics` instead of counting it as a miss.
    """
    n = np.array([len(r) for r in ranks], dtype=np.int64)
    has = n > 0
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits = np.array([(r < k).sum() for r in ranks], dtype=np.float64)
        dcg = np.array([(1.0 / np.log2(r[r < k] + 2.0)).sum() for r in ranks], dtype=np.float64)
        recall, hit, ndcg = (np.full(len(ranks), np.nan) for _ in range(3))
        recall[has] = hits[has] / n[has]
        hit[has] = (hits[has] > 0).astype(np.float64)
        ndcg[has] = dcg[has] / _ideal_dcg(n[has], k)
        out[f"recall@{k}"], out[f"hit@{k}"], out[f"ndcg@{k}"] = recall, hit, ndcg
    mrr = np.full(len(ranks), np.nan)
    mrr[has] = [1.0 / (r.min() + 1.0) for r, h in zip(ranks, has) if h]
    out["mrr"] = mrr
    return out


def mean_metrics(per_query: dict[str, np.ndarray], select: np.ndarray | None = None) -> dict[str, float]:
    """Average over the selected queries that have targets (NaN rows are left out)."""
    out: dict[str, float] = {}
    for name, values in per_query.items():
        v = values if select is None else values[select]
        v = v[~np.isnan(v)]
        out[name] = float(v.mean()) if len(v) else 0.0
    return out


def filter_targets(targets: Sequence[np.ndarray], ranks: Sequence[np.ndarray], keep: np.ndarray) -> list[np.ndarray]:
    """Ranks of only the targets whose item passes ``keep`` ((items,) bool), per query.

    Ranks stay those of the full ranking: a cold target's rank still counts the warm
    targets ahead of it. Used for the warm / cold target subsets of the time split.
    """
    return [r[keep[np.asarray(t, dtype=np.int64)]] for t, r in zip(targets, ranks)]
