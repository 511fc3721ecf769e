"""Retriever: the FAISS item index as a Serve deployment (search and item lookup)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from coldrec.index.item_index import ItemIndex


def _text(value: Any) -> str:
    """Parquet nulls come back as None or NaN; callers want a plain string."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


@serve.deployment
class Retriever:
    """Loads one index version folder (or the version its LATEST names) once per replica."""

    def __init__(self, index_dir: str):
        self.index = ItemIndex.load(index_dir)

    def search(
        self, vector: np.ndarray, k: int, exclude: list[str] | None = None, scene: str | None = None
    ) -> list[dict[str, Any]]:
        """Top ``k`` candidates for one query vector (dim,), best first.

        Each candidate: {item_id, title, score, vector}; the vector lets a reranker compare items.
        """
        hits = self.index.search(vector, k, exclude=[set(exclude or ())], scene=scene)[0]
        out = []
        for item_id, score in hits:
            row = self.index.get(item_id) or {}
            out.append(
                {
                    "item_id": item_id,
                    "title": _text(row.get("title")) or _text(row.get("text"))[:80],
                    "score": score,
                    "vector": self.index.vector(item_id),
                }
            )
        return out

    def lookup(self, item_ids: list[str]) -> dict[str, dict[str, str]]:
        """{item_id: {title, text, scene}} for the ids that exist; unknown ids are simply absent."""
        found = {}
        for item_id in item_ids:
            row = self.index.get(item_id)
            if row is not None:
                found[item_id] = {key: _text(row.get(key)) for key in ("title", "text", "scene")}
        return found

    def info(self) -> dict[str, Any]:
        scenes = sorted({_text(r.get("scene")) for r in self.index.rows().to_dict("records")} - {""})
        return {
            "items": len(self.index),
            "scenes": scenes,
            "model_version": self.index.meta.get("model_version"),
            "index_dir": self.index.meta.get("index_dir"),
        }
