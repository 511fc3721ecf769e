"""Reranker: orders the retriever's candidates into the final top k.

Today a simple, documented rule; a learned reranker replaces it by keeping the interface:
``rerank(candidates, k, exclude) -> candidates``, where a candidate is
{item_id, title, score, vector} and the returned ones keep their retrieval ``score``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve


def mmr_rerank(candidates: list[dict[str, Any]], k: int, diversity: float = 0.0) -> list[dict[str, Any]]:
    """Maximal marginal relevance: pick, one at a time, the candidate maximising
    ``(1 - diversity) * score - diversity * max cosine to the items already picked``.

    ``diversity = 0`` is a stable sort by score (ties broken by item_id, so answers are
    reproducible); small values (0.1-0.3) keep near-duplicates (same product, other size)
    from filling the list.
    """
    ranked = sorted(candidates, key=lambda c: (-c["score"], c["item_id"]))
    if diversity <= 0 or len(ranked) <= 1:
        return ranked[:k]
    vectors = np.stack([np.asarray(c["vector"], dtype=np.float32) for c in ranked])  # (n, dim)
    scores = np.array([c["score"] for c in ranked], dtype=np.float32)  # (n,)
    picked: list[int] = []
    max_sim = np.full(len(ranked), -np.inf, dtype=np.float32)  # similarity to the picked set
    left = np.ones(len(ranked), dtype=bool)
    while len(picked) < min(k, len(ranked)):
        redundancy = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = np.where(left, (1 - diversity) * scores - diversity * redundancy, -np.inf)
        best = int(np.argmax(value))  # argmax takes the first of ties: the higher-scored one
        picked.append(best)
        left[best] = False
        max_sim = np.maximum(max_sim, vectors @ vectors[best])
    return [ranked[i] for i in picked]


@serve.deployment
class Reranker:
    def __init__(self, diversity: float = 0.0):
        self.diversity = diversity

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: {diversity: 0..1} (MMR weight), tunable live."""
        diversity = float(config.get("diversity", self.diversity))
        if not 0.0 <= diversity <= 1.0:
            raise ValueError(f"diversity must lie in [0, 1], got {diversity}")
        self.diversity = diversity

    def rerank(
        self, candidates: list[dict[str, Any]], k: int, exclude: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The final top ``k``: never an item the user already clicked, then MMR; vectors dropped."""
        seen = set(exclude or ())
        fresh = [c for c in candidates if c["item_id"] not in seen]
        return [
            {key: value for key, value in c.items() if key != "vector"}
            for c in mmr_rerank(fresh, k, self.diversity)
        ]
