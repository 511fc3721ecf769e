"""In-batch softmax (InfoNCE) loss for the two-tower model.

Inputs: ``user_emb`` (batch, dim) and ``item_emb`` (batch, dim), unit length, where row i
of each is a positive pair; optional ``item_keys`` (batch,) int64 identify the items.

Negatives: every other item in the batch. When torch.distributed is initialised with more
than one worker and ``gather`` is on, item embeddings are all-gathered from every worker
(with gradients flowing back to their owners), so each user is scored against
``world_size * batch`` items: a larger effective batch without more memory per worker.

Temperature: logits are cosine similarities divided by ``temperature``; 0.05 is the usual
value for normalised sentence embeddings (sharp enough to separate near neighbours).

If the same item appears twice in the gathered batch, the copies that are not the label
are masked out rather than counted as negatives (popular items would otherwise be pushed
away from the very users who bought them).

Extra negatives (``negative_emb``, e.g. mined hard negatives, with their ``negative_keys``)
are scored by every user next to the in-batch items, gathered across workers the same way,
and masked the same way where one of them is the user's own positive item.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _gather(t: torch.Tensor, with_grad: bool) -> tuple[torch.Tensor, int]:
    """All-gather along dim 0; returns the gathered tensor and this worker's offset."""
    world = dist.get_world_size()
    rank = dist.get_rank()
    if with_grad:
        from torch.distributed.nn.functional import all_gather

        parts = all_gather(t)
    else:
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
    return torch.cat(list(parts), dim=0), rank * t.shape[0]


class InfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 0.05, gather: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature
        self.gather = gather

    def forward(
        self, user_emb: torch.Tensor, item_emb: torch.Tensor, item_keys: torch.Tensor | None = None,
        negative_emb: torch.Tensor | None = None, negative_keys: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch = user_emb.shape[0]
        distributed = self.gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if negative_emb is not None and (item_keys is None) != (negative_keys is None):
            raise ValueError("give keys for both the items and the negatives, or for neither")
        offset = 0
        candidates, keys = item_emb, item_keys
        negatives, neg_keys = negative_emb, negative_keys
        if distributed:
            candidates, offset = _gather(item_emb, with_grad=True)  # (world * batch, dim)
            if item_keys is not None:
                keys, _ = _gather(item_keys, with_grad=False)  # (world * batch,)
            if negative_emb is not None:
                negatives, _ = _gather(negative_emb, with_grad=True)
                if negative_keys is not None:
                    neg_keys, _ = _gather(negative_keys, with_grad=False)
        if negatives is not None:  # extra columns after the in-batch items: the labels stay put
            candidates = torch.cat([candidates, negatives], dim=0)
            if keys is not None:
                keys = torch.cat([keys, neg_keys], dim=0)
        logits = user_emb @ candidates.T / self.temperature  # (batch, world * batch [+ negatives])
        labels = torch.arange(batch, device=user_emb.device) + offset  # (batch,)
        if keys is not None:
            local_keys = keys[labels]  # (batch,)
            same_item = local_keys.unsqueeze(1) == keys.unsqueeze(0)  # (batch, world * batch)
            same_item[torch.arange(batch, device=user_emb.device), labels] = False
            logits = logits.masked_fill(same_item, torch.finfo(logits.dtype).min)
        return nn.functional.cross_entropy(logits, labels)
