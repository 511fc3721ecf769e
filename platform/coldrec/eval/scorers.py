"""Ways to score every catalog item for a batch of users, all behind one signature.

A scorer takes the evaluation examples (a DataFrame of user_id, history, target,
profile_text) and returns a (users, items) score matrix over the catalog order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

Scorer = Callable[[pd.DataFrame], np.ndarray]


def popularity_scorer(train_examples: pd.DataFrame, item_ids: list[str]) -> Scorer:
    """Count of each item among the training targets, the same for every user."""
    counts = train_examples["target"].value_counts()
    scores = np.array([counts.get(i, 0) for i in item_ids], dtype=np.float32)  # (items,)

    def score(batch: pd.DataFrame) -> np.ndarray:
        return np.broadcast_to(scores, (len(batch), len(scores)))

    return score


def encoder_scorer(encoder, item_texts: list[str], batch_size: int = 64, last_item_only: bool = False,
                   item_text_by_id: dict[str, str] | None = None, item_ids: list[str] | None = None,
                   scenes: list[str] | None = None) -> Scorer:
    """Dot product of the user tower's profile vector with every item-tower vector.

    ``last_item_only`` represents a user by the text of their newest item alone (the
    README's off-the-shelf baseline), instead of the full profile text. ``item_ids`` (and
    ``scenes``) name the catalog's items, for a model with ID vectors for warm items.
    """
    item_vecs = encoder.encode_items(item_texts, batch_size=batch_size, item_ids=item_ids, scenes=scenes)
    return vector_scorer(encoder, item_vecs, item_text_by_id or {}, batch_size, last_item_only)


def vector_scorer(encoder, item_vecs: np.ndarray, item_text_by_id: dict[str, str], batch_size: int = 64,
                  last_item_only: bool = False) -> Scorer:
    """:func:`encoder_scorer` on item vectors (items, dim) that are already computed."""

    def score(batch: pd.DataFrame) -> np.ndarray:
        if last_item_only:
            texts = [item_text_by_id.get(h[-1], "") if len(h) else "" for h in batch["history"]]
            users = encoder.encode_items(texts, batch_size=batch_size)
        else:
            users = encoder.encode_users(batch["profile_text"].tolist(), batch_size=batch_size)  # (batch, dim)
        return users @ item_vecs.T  # (batch, items)

    return score
