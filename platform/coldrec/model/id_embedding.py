"""The optional ID embedding for warm items, fused with the text embedding.

Text alone cannot know that two unrelated-looking items are bought together, or that one of two
near-identical listings is the one people buy. An item seen in training (a *warm* item) can
therefore carry a learned vector besides its text: its embedding is

    normalize(text_vector + id_vector[item])

and an item without one (a cold item: new, or too rare in training) keeps ``text_vector`` alone,
which is what the fused formula gives with a zero ID vector. The table starts at zero, so
training starts from the text model; ``model.id_embedding.dropout`` trains a share of the
warm rows through the text path alone, so text-only vectors stay in the same space.

The vocabulary is the training targets seen at least ``min_count`` times, keyed like the loss's
item keys (``scene\\x1fitem_id`` when several scenes train together). A checkpoint stores it with
the table in ``id_embedding.pt`` (:func:`save_id_table`); :class:`IdTable` applies it at
inference (indexing, evaluation, serving) from item ids, with no training code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

ID_TABLE_FILE = "id_embedding.pt"
SCENE_SEPARATOR = "\x1f"  # the same join as coldrec.train.batching.item_keys


def id_key(item_id: str, scene: str | None, with_scene: bool) -> str:
    return f"{scene}{SCENE_SEPARATOR}{item_id}" if with_scene else str(item_id)


class IdVocab:
    """Warm item keys -> table rows 1..n (row 0 is "no ID": the zero vector)."""

    def __init__(self, keys: Sequence[str], with_scene: bool):
        self.keys = list(keys)
        self.with_scene = with_scene
        self.row_of = {key: row for row, key in enumerate(self.keys, start=1)}
        self._row_of_hash: dict[int, int] | None = None  # built on first use, in training only

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_targets(cls, targets: Iterable[str], scenes: Iterable[str] | None, min_count: int = 1) -> "IdVocab":
        """Items seen at least ``min_count`` times among the training targets, in sorted order (the
        same vocabulary on every worker and every rerun)."""
        with_scene = scenes is not None
        keys = [id_key(t, s, True) for t, s in zip(targets, scenes)] if with_scene else [str(t) for t in targets]
        counts = Counter(keys)
        return cls(sorted(k for k, n in counts.items() if n >= min_count), with_scene)

    def rows(self, item_ids: Iterable[str], scenes: Iterable[str] | None = None) -> np.ndarray:
        """(n,) int64 table rows, 0 for items without an ID vector (and for every item when the
        vocabulary is per scene but no scenes are given)."""
        item_ids = list(item_ids)
        if self.with_scene and scenes is None:
            return np.zeros(len(item_ids), dtype=np.int64)
        scenes = list(scenes) if scenes is not None else [None] * len(item_ids)
        return np.array([self.row_of.get(id_key(str(i), s, self.with_scene), 0) for i, s in zip(item_ids, scenes)],
                        dtype=np.int64)  # fmt: skip

    def rows_for_hashes(self, hashes: torch.Tensor) -> torch.Tensor:
        """Table rows for a batch's item keys (``batching.item_keys``), on the keys' device."""
        if self._row_of_hash is None:
            # The training batches carry 64-bit hashes of the same keys (batching.item_keys).
            from coldrec.train.batching import stable_item_key

            self._row_of_hash = {stable_item_key(key): row for key, row in self.row_of.items()}
        rows = [self._row_of_hash.get(int(h), 0) for h in hashes.tolist()]
        return torch.tensor(rows, dtype=torch.int64, device=hashes.device)


def read_targets(folders: Iterable[Path], with_scene: bool) -> tuple[list[str], list[str] | None]:
    """Every training example's target (and scene) in ``examples/train`` folders."""
    import pyarrow.dataset as pads

    targets: list[str] = []
    scenes: list[str] | None = [] if with_scene else None
    for folder in folders:
        table = pads.dataset(str(folder), format="parquet").to_table(
            columns=["target", "scene"] if with_scene else ["target"])
        targets += [str(t) for t in table.column("target").to_pylist()]
        if scenes is not None:
            scenes += [str(s) for s in table.column("scene").to_pylist()]
    return targets, scenes


def fuse(text_vectors: torch.Tensor, id_vectors: torch.Tensor) -> torch.Tensor:
    """normalize(text + id), row by row; a zero ID row leaves a unit text vector as it is."""
    return torch.nn.functional.normalize(text_vectors + id_vectors.to(text_vectors.dtype), p=2, dim=-1)


def save_id_table(path: str | Path, vocab: IdVocab, weight: torch.Tensor) -> Path:
    """Write the vocabulary and the (len(vocab) + 1, dim) table beside a checkpoint's weights."""
    target = Path(path) / ID_TABLE_FILE
    torch.save({"keys": vocab.keys, "with_scene": vocab.with_scene, "weight": weight.detach().float().cpu()}, target)
    return target


def load_id_state(path: str | Path) -> tuple[IdVocab, torch.Tensor] | None:
    """``(vocab, weight)`` from a checkpoint folder, or None when it has no ID table."""
    source = Path(path) / ID_TABLE_FILE
    if not source.is_file():
        return None
    state = torch.load(source, map_location="cpu", weights_only=True)
    return IdVocab(state["keys"], bool(state["with_scene"])), state["weight"]


class IdTable:
    """The inference side: fuse catalog items' text vectors with their ID vectors, in numpy."""

    def __init__(self, vocab: IdVocab, weight: torch.Tensor):
        self.vocab = vocab
        self.weight = weight.float()  # (len(vocab) + 1, dim); row 0 is zeros

    @classmethod
    def load(cls, path: str | Path) -> "IdTable | None":
        state = load_id_state(path)
        return None if state is None else cls(*state)

    def apply(self, vectors: np.ndarray, item_ids: Sequence[str], scenes: Sequence[str] | None = None) -> np.ndarray:
        """(n, dim) unit vectors: warm items fused with their ID vector, the others unchanged."""
        if len(item_ids) != len(vectors):
            raise ValueError(f"{len(item_ids)} item ids for {len(vectors)} vectors")
        rows = self.vocab.rows(item_ids, scenes)
        warm = rows > 0
        if not warm.any():
            return vectors
        out = vectors.copy()
        out[warm] = fuse(torch.from_numpy(vectors[warm]), self.weight[torch.from_numpy(rows[warm])]).numpy()
        return out
