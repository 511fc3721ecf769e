"""Hard negatives mined with the current index: each positive item's nearest catalog neighbours.

In-batch negatives are mostly easy: random items from other users' histories. A hard negative
is an item the current model places close to the positive (same kind of product, a near
duplicate title), which teaches the towers the distinctions that decide a top-10 list.

At the start of every epoch :meth:`HardNegativeMiner.refresh` encodes the whole catalog with
the model as it is then and searches an exact FAISS index for each item's ``skip + pool``
nearest neighbours; during the epoch :meth:`HardNegativeMiner.sample` draws, for every training
pair, ``per_example`` of its positive's neighbours ranked ``skip+1 .. skip+pool``. Skipping
the very nearest ones lowers the chance of drawing an item the user would have liked as well
(a false negative). The loss scores every user against these extra items besides the in-batch
ones (:class:`coldrec.model.loss.InfoNCELoss`).
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np
import pandas as pd
import torch

from coldrec.model.encoder import encode_texts
from coldrec.train.batching import item_keys


class HardNegativeMiner:
    def __init__(self, items: pd.DataFrame, per_example: int, pool: int = 20, skip: int = 0,
                 with_scene: bool = False, seed: int = 0):  # fmt: skip
        """``items``: the catalog (``item_id``, ``text``, and ``scene`` when ``with_scene``, which
        must match how the training batches' item keys were made)."""
        if per_example < 1 or pool < per_example:
            raise ValueError(f"need 1 <= per_example <= pool, got {per_example} and {pool}")
        if len(items) < skip + pool + 1:
            raise ValueError(f"the catalog has {len(items)} items, fewer than skip + pool + 1 = {skip + pool + 1}")
        self.texts = ["" if t is None else str(t) for t in items["text"]]
        keys = item_keys(items["item_id"], items["scene"] if with_scene else None).numpy()
        self.row_of = {int(k): row for row, k in enumerate(keys)}
        self.keys = keys
        self.per_example, self.pool, self.skip = per_example, pool, skip
        self.rng = np.random.default_rng(seed)
        self.neighbours: np.ndarray | None = None  # (items, pool) catalog rows, nearest first

    def refresh(self, tower, tokenizer, max_tokens: int, device: torch.device | str = "cpu",
                batch_size: int = 128, finish: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Re-encode the catalog with ``tower`` (the item tower as it is now; ``encode_texts`` runs
        in inference mode) and find neighbours. ``finish`` maps the (items, dim) text vectors, in
        catalog order, to the final ones (the model's ID vectors added, for one with an ID table)."""
        vectors = encode_texts(tower, tokenizer, self.texts, max_tokens, batch_size, device)
        if finish is not None:
            with torch.inference_mode():
                vectors = finish(vectors)
        vectors = vectors.cpu().numpy()
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        _, found = index.search(vectors, self.skip + self.pool + 1)  # (items, skip + pool + 1)
        rows = np.arange(len(vectors))[:, None]
        # Drop each item itself wherever it ranked (ties can move it off rank 0), then skip and cut.
        found = np.where(found == rows, -1, found)
        ordered = np.array([r[r >= 0][: self.skip + self.pool] for r in found])
        self.neighbours = ordered[:, self.skip :]

    def sample(self, target_keys: torch.Tensor) -> tuple[list[str], torch.Tensor]:
        """Texts and int64 keys of ``per_example`` hard negatives per target, target-major
        (rows ``i * per_example ...`` belong to target i). A target missing from the catalog
        gets random catalog items."""
        if self.neighbours is None:
            raise RuntimeError("call refresh() before sample()")
        rows = []
        for key in target_keys.tolist():
            row = self.row_of.get(int(key))
            pool = len(self.texts) if row is None else self.neighbours[row]  # an int: any catalog row
            rows.extend(self.rng.choice(pool, size=self.per_example, replace=False))
        return [self.texts[r] for r in rows], torch.as_tensor(self.keys[rows], dtype=torch.int64)
