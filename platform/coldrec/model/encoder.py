"""Inference with the profile model: texts in, unit-length numpy vectors out.

Used by indexing, evaluation and serving alike; it needs only a checkpoint directory
(or a backbone name, for the untrained encoder) and never the training code. A checkpoint
trained with ``model.id_embedding`` also fuses warm items' ID vectors into their item vectors
when the caller names the items (``encode_items(texts, item_ids=...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from coldrec.config import HistoryOrder, ModelConfig
from coldrec.model.backbone import load_backbone
from coldrec.model.checkpoint import EncoderSettings, is_checkpoint, load_settings
from coldrec.model.id_embedding import IdTable
from coldrec.model.towers import TwoTowerModel


@torch.inference_mode()
def encode_texts(
    tower: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    tokenizer,
    texts: list[str],
    max_tokens: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(len(texts), dim) float32 unit vectors on ``device`` from one tower."""
    # Longest first, so each batch pads to similar lengths (less wasted compute).
    order = np.argsort([len(t) for t in texts], kind="stable")[::-1]
    chunks: list[tuple[np.ndarray, torch.Tensor]] = []
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        ).to(device)
        chunks.append((idx, tower(batch["input_ids"], batch["attention_mask"]).float()))  # (batch, dim)
    dim = chunks[0][1].shape[1]
    out = torch.empty((len(texts), dim), dtype=torch.float32, device=device)
    for idx, emb in chunks:
        out[torch.as_tensor(idx.copy(), device=device)] = emb
    return out


def profile_tokenizer(tokenizer, order: HistoryOrder):
    """The tokenizer for profile texts: ``tokenizer`` itself for "newest-first" histories, or a copy
    that truncates from the left for "oldest-first" ones (whose newest items are at the end).

    A copy, not a changed attribute: item texts, tokenized by the same tokenizer meanwhile (a Serve
    replica encodes catalog edits beside queries), must keep their titles."""
    if order != "oldest-first":
        return tokenizer
    import copy

    left = copy.deepcopy(tokenizer)
    left.truncation_side = "left"
    return left


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TextEncoder:
    def __init__(self, tokenizer, model: TwoTowerModel, settings: EncoderSettings, device: torch.device,
                 ids: IdTable | None = None):
        self.tokenizer = tokenizer
        self.user_tokenizer = profile_tokenizer(tokenizer, settings.text.history_order)
        self.model = model.to(device).eval()
        self.settings = settings
        self.device = device
        self.ids = ids  # warm items' ID vectors, for a checkpoint trained with them

    @classmethod
    def load(cls, source: str | Path, device: str | None = None, model_config: ModelConfig | None = None):
        """Load a coldrec checkpoint, or wrap a bare backbone (the untrained encoder)."""
        dev = pick_device(device)
        dtype = torch.bfloat16 if dev.type == "cuda" else None
        ids = None
        if is_checkpoint(source):
            settings = load_settings(source)
            tokenizer, backbone = load_backbone(str(source), dtype=dtype)
            ids = IdTable.load(source)
        else:
            cfg = (model_config or ModelConfig()).model_copy(update={"backbone": str(source)})
            settings = EncoderSettings.from_configs(cfg)
            tokenizer, backbone = load_backbone(cfg.backbone, dtype=dtype)
        return cls(tokenizer, TwoTowerModel(backbone), settings, dev, ids)

    @property
    def dim(self) -> int:
        return int(self.model.backbone.config.hidden_size)

    @property
    def version(self) -> str:
        return self.settings.version

    def _encode(self, texts: list[str], max_tokens: int, batch_size: int, tokenizer=None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokenizer = tokenizer or self.tokenizer
        return encode_texts(self.model.encode, tokenizer, texts, max_tokens, batch_size, self.device).cpu().numpy()

    def encode_items(self, texts: list[str], batch_size: int = 64, item_ids: list[str] | None = None,
                     scenes: list[str] | None = None) -> np.ndarray:
        """(len(texts), dim) item vectors. With ``item_ids`` (and ``scenes``, for a model trained on
        several scenes) and a model with an ID table, warm items get their ID vectors fused in;
        unknown ids, and calls without ids, get the text vector alone (a cold item)."""
        vectors = self._encode(list(texts), self.settings.max_item_tokens, batch_size)
        if self.ids is None or item_ids is None:
            return vectors
        return self.ids.apply(vectors, [str(i) for i in item_ids], None if scenes is None else [str(s) for s in scenes])

    def encode_users(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return self._encode(list(texts), self.settings.max_user_tokens, batch_size, self.user_tokenizer)
