"""Turning rows of training examples into model inputs (the last step before the towers).

A batch arrives from Ray Data as ``dict[str, np.ndarray]`` with the columns
``profile_text``, ``target_text`` and ``target`` (one row per positive pair). The
collate tokenizes each side with its own token budget and hashes the target ids,
so the loss can tell when two rows of a (gathered) batch hold the same item.
With ``train.batch_by_scene``, :func:`scene_batches` first regroups the stream so that each
batch holds one scene's rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

# The only columns training reads; selecting them early keeps the object store small.
TRAIN_COLUMNS = ["profile_text", "target_text", "target"]


def stable_item_key(item_id: str) -> int:
    """A signed 64-bit hash of an item id that is the same in every process and run.

    Python's ``hash`` is salted per process, so two workers would disagree about it.
    """
    digest = hashlib.blake2b(str(item_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def item_keys(item_ids: Iterable[str], scenes: Iterable[str] | None = None) -> torch.Tensor:
    """(batch,) int64 keys for a batch of item ids; ``scenes`` (one per id, when several scenes
    train together) keeps equal ids of different catalogs apart."""
    if scenes is not None:
        item_ids = [f"{scene}\x1f{item_id}" for scene, item_id in zip(scenes, item_ids)]
    return torch.tensor([stable_item_key(i) for i in item_ids], dtype=torch.int64)


def _texts(column: Any) -> list[str]:
    # Missing text becomes "" rather than the string "None": an empty input still
    # tokenizes to [CLS] [SEP] and keeps the row aligned with its pair.
    return ["" if t is None else str(t) for t in column]


class TokenizingCollate(NumpyBatchCollateFn):
    """``iter_torch_batches(collate_fn=...)``: numpy columns in, tensors out.

    Subclassing ``NumpyBatchCollateFn`` tells Ray to hand over ``dict[str, np.ndarray]``
    (a bare function is deprecated since Ray 2.47); it is still a plain callable in tests.

    Output keys (all tensors, shapes ``(batch, tokens)`` or ``(batch,)``):
    ``user_input_ids``, ``user_attention_mask`` (at most ``max_user_tokens``),
    ``item_input_ids``, ``item_attention_mask`` (at most ``max_item_tokens``) and
    ``item_keys`` (int64 hashes of ``target``, and of ``scene`` when the batch has it).
    """

    def __init__(self, tokenizer, max_user_tokens: int, max_item_tokens: int, user_tokenizer=None):
        if max_user_tokens <= 0 or max_item_tokens <= 0:
            raise ValueError("token budgets must be positive")
        self.tokenizer = tokenizer
        # Profiles may truncate from the other side (coldrec.model.encoder.profile_tokenizer).
        self.user_tokenizer = user_tokenizer or tokenizer
        self.max_user_tokens = max_user_tokens
        self.max_item_tokens = max_item_tokens

    @staticmethod
    def _tokenize(tokenizer, texts: list[str], max_tokens: int) -> dict[str, torch.Tensor]:
        # Pad to the longest row in this batch, not to the budget: short texts stay cheap.
        return tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        missing = [c for c in TRAIN_COLUMNS if c not in batch]
        if missing:
            raise KeyError(f"training batch lacks columns {missing}; has {sorted(batch)}")
        user = self._tokenize(self.user_tokenizer, _texts(batch["profile_text"]), self.max_user_tokens)
        item = self._tokenize(self.tokenizer, _texts(batch["target_text"]), self.max_item_tokens)
        return {
            "user_input_ids": user["input_ids"],
            "user_attention_mask": user["attention_mask"],
            "item_input_ids": item["input_ids"],
            "item_attention_mask": item["attention_mask"],
            "item_keys": item_keys(batch["target"], batch.get("scene")),
        }


def scene_batches(batches: Iterable[Mapping[str, np.ndarray]], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Regroup a stream of row batches (with a ``scene`` column) into batches of ``batch_size``
    rows of one scene each.

    A scene's batch is yielded as soon as it is full, so the scenes interleave as they come in
    the (shuffled) stream, each in proportion to its share of it, and each keeps its rows' order.
    What is left of each scene at the end (fewer than ``batch_size`` rows) is dropped, as
    ``drop_last`` drops a partial batch: at most ``batch_size - 1`` rows per scene.
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    pending: dict[str, list[dict[str, np.ndarray]]] = {}  # scene -> row batches not yet yielded
    count: dict[str, int] = {}
    for batch in batches:
        if "scene" not in batch:
            raise KeyError(f"batching by scene needs a scene column; the batch has {sorted(batch)}")
        scenes = np.asarray(batch["scene"]).astype(str)
        for scene in dict.fromkeys(scenes.tolist()):
            mask = scenes == scene
            pending.setdefault(scene, []).append({k: np.asarray(v)[mask] for k, v in batch.items()})
            count[scene] = count.get(scene, 0) + int(mask.sum())
            while count[scene] >= batch_size:
                rows = {k: np.concatenate([part[k] for part in pending[scene]]) for k in pending[scene][0]}
                yield {k: v[:batch_size] for k, v in rows.items()}
                rest = {k: v[batch_size:] for k, v in rows.items()}
                count[scene] -= batch_size
                pending[scene] = [rest] if count[scene] else []
