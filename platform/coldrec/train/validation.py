"""Validation Recall@K with full ranking over the whole catalog (no Ray needed).

Every catalog item is encoded with the item tower, every sampled validation profile
with the user tower; a user scores a hit when their target item is among the K items
with the highest dot product. Used once per epoch on rank 0 during training, and
usable on its own (tests, notebooks)::

    recall = recall_at_k(model, tokenizer, load_items(d), load_examples(d, "valid"), k=10)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from coldrec.model.encoder import encode_texts
from coldrec.model.id_embedding import IdVocab
from coldrec.model.towers import TwoTowerModel


def sample_examples(examples: pd.DataFrame, max_users: int | None, seed: int = 0) -> pd.DataFrame:
    """A fixed, seeded sample of rows, so every epoch is scored on the same users."""
    if max_users is None or len(examples) <= max_users:
        return examples.reset_index(drop=True)
    return examples.sample(n=max_users, random_state=seed).reset_index(drop=True)


def recall_at_k(
    model: TwoTowerModel,
    tokenizer,
    items: pd.DataFrame,
    examples: pd.DataFrame,
    k: int = 10,
    max_user_tokens: int = 128,
    max_item_tokens: int = 64,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    id_vocab: IdVocab | None = None,
    user_tokenizer=None,
) -> float:
    """Fraction of ``examples`` whose ``target`` ranks in the top ``k`` of the catalog.

    ``items`` needs ``item_id`` and ``text``; ``examples`` needs ``profile_text`` and
    ``target``. Examples whose target is not in the catalog can never be hit, so they
    are left out (and counted in a printed note) rather than silently scored as misses.
    The model is put in eval mode for the pass and restored to its previous mode.
    With ``id_vocab`` (a model with an ID table), warm items get their ID vectors added.
    ``user_tokenizer``: the profiles' tokenizer when it differs (``profile_tokenizer``).
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    for name, frame, cols in (("items", items, ("item_id", "text")), ("examples", examples, ("profile_text", "target"))):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}")
    # One vector per item id: a catalog shared by scenes may list an id twice.
    catalog = items.drop_duplicates("item_id").reset_index(drop=True)
    if catalog.empty:
        raise ValueError("the catalog is empty")
    position = pd.Series(np.arange(len(catalog)), index=catalog["item_id"].astype(str))
    targets = examples["target"].astype(str)
    known = targets.isin(position.index)
    if not known.all():
        print(f"[validation] {int((~known).sum())} of {len(examples)} examples have a target outside the catalog; skipped")
    examples, targets = examples[known], targets[known]
    if examples.empty:
        raise ValueError("no validation example has its target in the catalog")

    was_training = model.training
    model.eval()
    try:
        item_texts = catalog["text"].fillna("").astype(str).tolist()
        user_texts = examples["profile_text"].fillna("").astype(str).tolist()
        item_emb = encode_texts(model.item_tower, tokenizer, item_texts, max_item_tokens, batch_size, device)
        if id_vocab is not None:
            scenes = catalog["scene"].astype(str) if id_vocab.with_scene and "scene" in catalog else None
            rows = torch.as_tensor(id_vocab.rows(catalog["item_id"].astype(str), scenes), device=item_emb.device)
            with torch.inference_mode():
                item_emb = model.add_ids(item_emb, rows)
        user_emb = encode_texts(model.user_tower, user_tokenizer or tokenizer, user_texts, max_user_tokens, batch_size,
                                device)
    finally:
        model.train(was_training)

    target_pos = torch.as_tensor(position[targets].to_numpy().copy(), device=item_emb.device)  # (users,)
    hits = 0
    for start in range(0, len(user_emb), 1024):  # bounds the (users, items) score matrix
        scores = user_emb[start : start + 1024] @ item_emb.T  # (chunk, n_items)
        rows = torch.arange(scores.shape[0], device=scores.device)
        target_score = scores[rows, target_pos[start : start + 1024]].unsqueeze(1)  # (chunk, 1)
        # Rank = items scoring strictly higher; ties go in the target's favour.
        rank = (scores > target_score).sum(dim=1)  # (chunk,)
        hits += int((rank < k).sum())
    return hits / len(user_emb)
