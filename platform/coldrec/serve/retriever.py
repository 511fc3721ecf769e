"""Retriever: the FAISS item index as a Serve deployment (search, similar items, item lookup).

Each replica loads one index version folder once, then keeps it current from the store's catalog
change log: before every search, lookup or info it applies the changes after the last seq it saw
(one indexed query when nothing changed). A catalog edit acknowledged by the ingress is therefore
seen by the next request on every replica, and a restarted replica replays the log over the
saved index. Changes encoded by another model version (the index was rebuilt since) are
re-encoded with the ProfileEncoder's item tower.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from coldrec.index.item_index import ItemIndex
from coldrec.serve.metrics import catalog_gauges
from coldrec.store import CatalogChange, open_store

LOOKUP_FIELDS = ("title", "text", "scene", "categories", "brand", "genres")


def _text(value: Any) -> str:
    """Parquet nulls come back as None or NaN; callers want a plain string."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _category_filter(category: str | None):
    """Rows whose categories or genres contain ``category``, ignoring case (None: every row)."""
    if category is None:
        return None
    needle = category.strip().lower()
    return lambda row: needle in f"{_text(row.get('categories'))} | {_text(row.get('genres'))}".lower()


@serve.deployment
class Retriever:
    def __init__(self, index_dir: str, store: str | None = None, encoder: DeploymentHandle | None = None):
        self.index = ItemIndex.load(index_dir)
        self.model_version = self.index.meta.get("model_version")
        self.store = open_store(store) if store else None
        self.encoder = encoder
        self.seq = 0  # the last catalog change applied
        self._sync_lock = asyncio.Lock()
        self._scenes = self._collect_scenes()
        self._report()

    def _report(self) -> None:
        try:
            items, seq = catalog_gauges()
            tags = {"model_version": str(self.model_version)}
            items.set(len(self.index), tags=tags)
            seq.set(self.seq, tags=tags)
        except Exception:  # metrics never stop serving
            pass

    def _collect_scenes(self) -> list[str]:
        return sorted({_text(r.get("scene")) for r in self.index.rows().to_dict("records")} - {""})

    async def sync(self) -> int:
        """Apply the catalog changes after ``self.seq``; returns how many were read."""
        if self.store is None:
            return 0
        async with self._sync_lock:  # one applier at a time; the others then find nothing new
            changes = self.store.catalog_changes(since=self.seq)
            if not changes:
                return 0
            latest: dict[str, CatalogChange] = {}
            for change in changes:  # only each item's last change matters
                latest.pop(change.item_id, None)
                latest[change.item_id] = change
            await self._apply(list(latest.values()))
            self.seq = changes[-1].seq
            self._scenes = self._collect_scenes()
            self._report()
            return len(changes)

    async def _apply(self, changes: list[CatalogChange]) -> None:
        self.index.remove([c.item_id for c in changes if c.op == "delete"])
        puts = [c for c in changes if c.op == "put"]
        if not puts:
            return
        vectors = [
            c.vector if c.model_version == self.model_version and c.vector is not None and len(c.vector) == self.index.dim
            else None
            for c in puts
        ]
        stale = [i for i, v in enumerate(vectors) if v is None]
        if stale:
            if self.encoder is None:
                raise RuntimeError(f"{len(stale)} catalog changes were encoded by another model and no encoder is bound")
            fresh = await self.encoder.encode_items.remote([puts[i].row.get("text", "") for i in stale])
            for i, vector in zip(stale, fresh):
                vectors[i] = vector
        self.index.upsert([dict(c.row) for c in puts], np.stack(vectors))  # (changes, dim)

    def _candidate(self, item_id: str, score: float) -> dict[str, Any]:
        row = self.index.get(item_id) or {}
        return {
            "item_id": item_id,
            "title": _text(row.get("title")) or _text(row.get("text"))[:80],
            "text": _text(row.get("text")),
            "score": score,
            "vector": self.index.vector(item_id),
        }

    async def search(
        self,
        vector: np.ndarray,
        k: int,
        exclude: list[str] | None = None,
        scene: str | None = None,
        category: str | None = None,
    ) -> list[dict[str, Any]]:
        """Top ``k`` candidates for one query vector (dim,), best first.

        Each candidate: {item_id, title, text, score, vector}; the vector lets a reranker compare items.
        """
        await self.sync()
        hits = await asyncio.to_thread(
            self.index.search, vector, k, [set(exclude or ())], scene, _category_filter(category)
        )
        return [self._candidate(item_id, score) for item_id, score in hits[0]]

    async def similar(self, item_id: str, k: int, scene: str | None = None) -> list[dict[str, Any]] | None:
        """The ``k`` items nearest to a catalog item's stored vector (itself excluded); None if unknown."""
        await self.sync()
        if item_id not in self.index:
            return None
        hits = await asyncio.to_thread(self.index.search, self.index.vector(item_id), k, [{item_id}], scene)
        return [{"item_id": i, "title": self._candidate(i, s)["title"], "score": s} for i, s in hits[0]]

    async def lookup(self, item_ids: list[str], with_vectors: bool = False) -> dict[str, dict[str, Any]]:
        """{item_id: {title, text, scene, categories, brand, genres[, vector]}} for the ids that exist."""
        await self.sync()
        found = {}
        for item_id in item_ids:
            row = self.index.get(item_id)
            if row is not None:
                found[item_id] = {key: _text(row.get(key)) for key in LOOKUP_FIELDS}
                if with_vectors:
                    found[item_id]["vector"] = self.index.vector(item_id)
        return found

    async def info(self) -> dict[str, Any]:
        await self.sync()
        context = serve.get_replica_context()
        return {
            "items": len(self.index),
            "scenes": self._scenes,
            "model_version": self.model_version,
            "index_dir": self.index.meta.get("index_dir"),
            "catalog_seq": self.seq,
            "replica": context.replica_id.unique_id if context else None,
        }
