"""Full-ranking metrics for one held-out target per user.

``ranks`` are 0-based positions of each user's target in a ranking over the whole
catalog (0 = first). With a single relevant item, Recall@K equals HitRate@K and
NDCG@K is 1/log2(rank + 2) inside the top K.
"""

from __future__ import annotations

import numpy as np


def target_ranks(scores: np.ndarray, targets: np.ndarray, tie_order: np.ndarray) -> np.ndarray:
    """Rank of each target among all items.

    scores: (users, items) float; targets: (users,) column index of the target;
    tie_order: (items,) a fixed permutation rank used to break exact ties, so items
    with equal scores (popularity counts, masked items) are not ordered in the
    target's favour.
    """
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]  # (users, 1)
    greater = (scores > target_scores).sum(axis=1)
    tied_before = ((scores == target_scores) & (tie_order[None, :] < tie_order[targets][:, None])).sum(axis=1)
    return greater + tied_before


def rank_metrics(ranks: np.ndarray, ks: list[int]) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()) if len(ranks) else 0.0
    out["mrr"] = float((1.0 / (ranks + 1.0)).mean()) if len(ranks) else 0.0
    return out
