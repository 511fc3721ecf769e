"""The two-tower profile model: one shared Hugging Face backbone, two roles.

The user tower reads the user's profile text (free text and/or recent item texts,
newest first); the item tower reads an item's text. Both mean-pool the last hidden
states over real tokens and L2-normalise, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import torch
from torch import nn


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    summed = (hidden * mask).sum(dim=1)  # (batch, dim)
    counts = mask.sum(dim=1).clamp(min=1e-9)  # (batch, 1)
    return summed / counts


class TwoTowerModel(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)  # (batch, dim)
        return nn.functional.normalize(pooled.float(), p=2, dim=-1)

    def user_tower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode(input_ids, attention_mask)

    def item_tower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode(input_ids, attention_mask)

    def forward(
        self,
        user_input_ids: torch.Tensor,
        user_attention_mask: torch.Tensor,
        item_input_ids: torch.Tensor,
        item_attention_mask: torch.Tensor,
        negative_input_ids: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Return ``(user_embedding, item_embedding)``, each (batch, dim), unit length, and
        with negative item inputs also their (negatives, dim) embeddings from the item tower
        (in the same forward call, so DDP sees every use of the weights)."""
        user = self.user_tower(user_input_ids, user_attention_mask)
        item = self.item_tower(item_input_ids, item_attention_mask)
        if negative_input_ids is None:
            return user, item
        return user, item, self.item_tower(negative_input_ids, negative_attention_mask)
