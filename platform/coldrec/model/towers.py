"""The two-tower profile model: one shared Hugging Face backbone, two roles.

The user tower reads the user's profile text (free text and/or recent item texts,
newest first); the item tower reads an item's text. Both mean-pool the last hidden
states over real tokens and L2-normalise, so a dot product is a cosine similarity.
With ``num_ids`` the item tower also adds warm items' learned ID vectors
(:mod:`coldrec.model.id_embedding`); row 0 of that table is "no ID" and stays zero.
"""

from __future__ import annotations

import torch
from torch import nn

from coldrec.model.id_embedding import fuse


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    summed = (hidden * mask).sum(dim=1)  # (batch, dim)
    counts = mask.sum(dim=1).clamp(min=1e-9)  # (batch, 1)
    return summed / counts


class TwoTowerModel(nn.Module):
    def __init__(self, backbone: nn.Module, num_ids: int = 0, id_dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.id_embedding: nn.Embedding | None = None
        self.id_dropout = id_dropout
        if num_ids > 0:
            self.id_embedding = nn.Embedding(num_ids + 1, int(backbone.config.hidden_size), padding_idx=0)
            nn.init.zeros_(self.id_embedding.weight)  # start from the text model

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)  # (batch, dim)
        return nn.functional.normalize(pooled.float(), p=2, dim=-1)

    def user_tower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode(input_ids, attention_mask)

    def item_tower(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, id_rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Item texts (and, with an ID table, their (batch,) table rows, 0 = none) -> unit vectors."""
        return self.add_ids(self.encode(input_ids, attention_mask), id_rows)

    def add_ids(self, text_vectors: torch.Tensor, id_rows: torch.Tensor | None) -> torch.Tensor:
        """Fuse unit text vectors (batch, dim) with their items' ID vectors; in training mode,
        ``id_dropout`` of the rows keep their text vector alone."""
        if self.id_embedding is None or id_rows is None:
            return text_vectors
        if self.training and self.id_dropout > 0:
            keep = torch.rand(id_rows.shape, device=id_rows.device) >= self.id_dropout
            id_rows = torch.where(keep, id_rows, torch.zeros_like(id_rows))
        return fuse(text_vectors, self.id_embedding(id_rows))  # (batch, dim)

    def forward(
        self,
        user_input_ids: torch.Tensor,
        user_attention_mask: torch.Tensor,
        item_input_ids: torch.Tensor,
        item_attention_mask: torch.Tensor,
        negative_input_ids: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        item_id_rows: torch.Tensor | None = None,
        negative_id_rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Return ``(user_embedding, item_embedding)``, each (batch, dim), unit length, and
        with negative item inputs also their (negatives, dim) embeddings from the item tower
        (in the same forward call, so DDP sees every use of the weights). ``*_id_rows``: the
        items' ID table rows, when the model has an ID table."""
        user = self.user_tower(user_input_ids, user_attention_mask)
        item = self.item_tower(item_input_ids, item_attention_mask, item_id_rows)
        if negative_input_ids is None:
            return user, item
        return user, item, self.item_tower(negative_input_ids, negative_attention_mask, negative_id_rows)
