"""Reranker: orders the retriever's candidates into the final top k.

Today a simple, documented rule; a learned reranker replaces it by keeping the interface:
``rerank(candidates, k, exclude, context) -> items``, where a candidate is
{item_id, title, text, score, vector} and a returned item is {item_id, title, score, reason},
keeping its retrieval ``score``. ``context`` = {"history": [{item_id, title, vector}],
"words": [query words]} is what the reasons are made from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from coldrec.serve.profile import informative_words


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


def explain(candidate: dict[str, Any], history: list[dict[str, Any]], words: list[str]) -> str:
    """A short reason: the query words the item's text contains, else the profile item most like it."""
    if words:
        own = set(informative_words(f"{candidate.get('title', '')} {candidate.get('text', '')}"))
        matched = [w for w in dict.fromkeys(words) if w in own][:3]
        if matched:
            return "matches " + ", ".join(f"'{w}'" for w in matched)
    if history and candidate.get("vector") is not None:
        vector = np.asarray(candidate["vector"], dtype=np.float32)
        sims = [float(np.dot(vector, np.asarray(h["vector"], dtype=np.float32))) for h in history]
        best = history[int(np.argmax(sims))]
        return f"like '{best['title'] or best['item_id']}'"
    return "close to your description" if words else "close to your profile"


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
        self,
        candidates: list[dict[str, Any]],
        k: int,
        exclude: list[str] | None = None,
        context: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The final top ``k``: never an excluded item, then MMR; each with a reason, vectors dropped."""
        seen = set(exclude or ())
        fresh = [c for c in candidates if c["item_id"] not in seen]
        history, words = (context or {}).get("history") or [], (context or {}).get("words") or []
        return [
            {"item_id": c["item_id"], "title": c["title"], "score": c["score"], "reason": explain(c, history, words)}
            for c in mmr_rerank(fresh, k, self.diversity)
        ]
