"""Retriever: the FAISS item index as a Serve deployment (search, similar items, item lookup).

Each replica loads one index version folder once, then keeps it current from the store's catalog
change log: before every search, lookup or info it applies the changes after the last seq it saw
(one indexed query when nothing changed). A catalog edit acknowledged by the ingress is therefore
seen by the next request on every replica, and a restarted replica replays the log over the
saved index. Changes encoded by another model version (the index was rebuilt since) are
re-encoded with the ProfileEncoder's item tower.

The Ingress coalesces concurrent /recommend requests into one ``search_many`` call: the log is
applied once for the whole batch (after the batch formed, so an edit acknowledged before a request
was sent is still seen), and queries with the same k, scene and category share one FAISS search.
Each answer is a :class:`~coldrec.serve.candidates.CandidateList`, which Ray sends to the Reranker
with its vectors in one block.

``user_config: {index_dir: ...}`` swaps in another index built with the *same* model (a rebuilt
catalog, another FAISS factory) without a restart: the new index is loaded and brought up to date
with the change log beside the old one, then replaces it between two requests. A new *model*
version changes the encoder too, so it is a config update of the app's args (see serve/launch.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from coldrec.index.item_index import ItemIndex, resolve_index_dir
from coldrec.serve.candidates import CandidateList
from coldrec.serve.metrics import catalog_gauges
from coldrec.store import CatalogChange, open_store

CANDIDATE_TEXT_CHARS = 300
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


def _count_scenes(index: ItemIndex) -> Counter:
    rows = index.rows()
    return Counter(_text(scene) for scene in rows["scene"]) if "scene" in rows else Counter()


@serve.deployment
class Retriever:
    def __init__(self, index_dir: str, store: str | None = None, encoder: DeploymentHandle | None = None,
                 search_device: str = "cpu"):
        # search_device: "cpu", "gpu" or "auto" (a FAISS GPU copy when a GPU is visible to this replica)
        self.search_device = search_device
        self.index = ItemIndex.load(index_dir, device=search_device)
        self.index_dir = resolve_index_dir(index_dir)
        self.model_version = self.index.meta.get("model_version")
        self.store = open_store(store) if store else None
        self.encoder = encoder
        self.seq = 0  # the last catalog change applied
        self.calls: Counter = Counter()  # calls per method (and queries answered by search_many), for info()
        self._sync_lock = asyncio.Lock()
        # Items per scene, kept up to date change by change: rebuilding it from index.rows() cost
        # 36 ms per applied batch on the 4,385-item Scientific catalog, on the request path.
        self._scene_counts = _count_scenes(self.index)
        self._report()

    @property
    def _scenes(self) -> list[str]:
        return sorted(scene for scene, n in self._scene_counts.items() if n > 0 and scene)

    def _report(self) -> None:
        try:
            items, seq = catalog_gauges()
            tags = {"model_version": str(self.model_version)}
            items.set(len(self.index), tags=tags)
            seq.set(self.seq, tags=tags)
        except Exception:  # metrics never stop serving
            pass

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: {index_dir}: serve another index of the same model, brought up to date first."""
        wanted = config.get("index_dir")
        if not wanted or resolve_index_dir(wanted) == self.index_dir:
            return
        index = await asyncio.to_thread(ItemIndex.load, wanted, self.search_device)
        version = index.meta.get("model_version")
        if version != self.model_version or index.dim != self.index.dim:
            raise ValueError(
                f"index {wanted} was built with model {version!r} ({index.dim}-d) but this app serves "
                f"{self.model_version!r} ({self.index.dim}-d): roll a new model out by updating the app's args"
            )
        counts = _count_scenes(index)
        seq = await self._catch_up(index, 0, counts)  # the whole log, as a restarted replica replays it
        async with self._sync_lock:
            self.seq = await self._catch_up(index, seq, counts)  # what arrived meanwhile
            self.index, self.index_dir, self._scene_counts = index, resolve_index_dir(wanted), counts
            self._report()

    async def sync(self) -> ItemIndex:
        """Apply the catalog changes after ``self.seq``; returns the index to answer from.

        Callers use that one object for the whole answer: a reconfigure may swap ``self.index``
        while they wait on a thread."""
        if self.store is None:
            return self.index
        async with self._sync_lock:  # one applier at a time; the others then find nothing new
            before = self.seq
            self.seq = await self._catch_up(self.index, before, self._scene_counts)
            if self.seq != before:
                self._report()
            return self.index

    async def _catch_up(self, index: ItemIndex, since: int, scene_counts: Counter) -> int:
        """Apply every change after ``since`` to ``index`` (and to its ``scene_counts``); returns the last seq applied."""
        if self.store is None:
            return since
        changes = self.store.catalog_changes(since=since)
        if not changes:
            return since
        latest: dict[str, CatalogChange] = {}
        for change in changes:  # only each item's last change matters
            latest.pop(change.item_id, None)
            latest[change.item_id] = change
        old_scenes = [_text(row.get("scene")) for row in map(index.get, latest) if row is not None]
        await self._apply(index, list(latest.values()))
        scene_counts.subtract(old_scenes)
        scene_counts.update(_text(c.row.get("scene")) for c in latest.values() if c.op == "put")
        return changes[-1].seq

    async def _apply(self, index: ItemIndex, changes: list[CatalogChange]) -> None:
        index.remove([c.item_id for c in changes if c.op == "delete"])
        puts = [c for c in changes if c.op == "put"]
        if not puts:
            return
        vectors = [
            c.vector if c.model_version == self.model_version and c.vector is not None and len(c.vector) == index.dim
            else None
            for c in puts
        ]
        stale = [i for i, v in enumerate(vectors) if v is None]
        if stale:
            if self.encoder is None:
                raise RuntimeError(f"{len(stale)} catalog changes were encoded by another model and no encoder is bound")
            stale_puts = [puts[i] for i in stale]
            fresh = await self.encoder.encode_items.remote(
                [c.row.get("text", "") for c in stale_puts], [c.item_id for c in stale_puts],
                [_text(c.row.get("scene")) for c in stale_puts])
            for i, vector in zip(stale, fresh):
                vectors[i] = vector
        index.upsert([dict(c.row) for c in puts], np.stack(vectors))  # (changes, dim)

    @staticmethod
    def _title(row: dict[str, Any]) -> str:
        return _text(row.get("title")) or _text(row.get("text"))[:80]

    @classmethod
    def _candidates(cls, index: ItemIndex, hits: list[tuple[str, float]]) -> CandidateList:
        """One query's (item_id, score) hits as candidates, their vectors read in one FAISS call."""
        # Kept small: 100 candidates with float32 vectors and whole texts came to ~190 KB per
        # request, above Ray's inline limit (100 KB), so every answer went through the object
        # store. float16 is plenty for MMR and reasons; reasons read only the text's start.
        vectors = index.vectors([item_id for item_id, _ in hits]).astype(np.float16)  # (hits, dim)
        out = CandidateList()
        for (item_id, score), vector in zip(hits, vectors):
            row = index.get(item_id) or {}
            out.append({"item_id": item_id, "title": cls._title(row),
                        "text": _text(row.get("text"))[:CANDIDATE_TEXT_CHARS], "score": score, "vector": vector})
        return out

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
        self.calls["search"] += 1
        index = await self.sync()
        query = {"k": k, "exclude": exclude, "scene": scene, "category": category}
        (answer,) = await asyncio.to_thread(self._search_all, index, [vector], [query])
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def search_many(
        self, vectors: list[np.ndarray | BaseException], queries: list[dict[str, Any]]
    ) -> list[list[dict[str, Any]] | BaseException]:
        """``search`` for a batch of coalesced requests: the catalog log is applied once, then every
        query ({k, exclude, scene, category}, as ``search`` takes them) is answered in one thread hop.

        A vector that is an exception (its encoding failed) comes back in its answer's place, and so
        does a failed search's error, so one bad query never fails the others."""
        self.calls["search_many"] += 1
        self.calls["queries"] += len(queries)
        index = await self.sync()
        return await asyncio.to_thread(self._search_all, index, vectors, queries)

    def _search_all(
        self, index: ItemIndex, vectors: list[np.ndarray | BaseException], queries: list[dict[str, Any]]
    ) -> list[list[dict[str, Any]] | BaseException]:
        """Queries sharing (k, scene, category) go to FAISS as one batch, each with its own exclude set."""
        answers: list[Any] = list(vectors)  # exceptions stay where they are
        groups: dict[tuple, list[int]] = {}
        for i, (vector, query) in enumerate(zip(vectors, queries)):
            if not isinstance(vector, BaseException):
                groups.setdefault((query["k"], query.get("scene"), query.get("category")), []).append(i)
        for (k, scene, category), rows in groups.items():
            try:
                hits = index.search(
                    np.stack([vectors[i] for i in rows]),  # (len(rows), dim)
                    k,
                    [set(queries[i].get("exclude") or ()) for i in rows],
                    scene,
                    _category_filter(category),
                )
                for i, row_hits in zip(rows, hits):
                    answers[i] = self._candidates(index, row_hits)
            except Exception as err:  # this group only
                for i in rows:
                    answers[i] = err
        return answers

    async def similar(self, item_id: str, k: int, scene: str | None = None) -> list[dict[str, Any]] | None:
        """The ``k`` items nearest to a catalog item's stored vector (itself excluded); None if unknown."""
        index = await self.sync()
        if item_id not in index:
            return None
        hits = await asyncio.to_thread(index.search, index.vector(item_id), k, [{item_id}], scene)
        return [{"item_id": i, "title": self._title(index.get(i) or {}), "score": s} for i, s in hits[0]]

    async def lookup(self, item_ids: list[str], with_vectors: bool = False) -> dict[str, dict[str, Any]]:
        """{item_id: {title, text, scene, categories, brand, genres[, vector]}} for the ids that exist."""
        self.calls["lookup"] += 1
        index = await self.sync()
        found = {}
        for item_id in item_ids:
            row = index.get(item_id)
            if row is not None:
                found[item_id] = {key: _text(row.get(key)) for key in LOOKUP_FIELDS}
                if with_vectors:
                    found[item_id]["vector"] = index.vector(item_id)
        return found

    async def info(self) -> dict[str, Any]:
        index = await self.sync()
        context = serve.get_replica_context()
        return {
            "items": len(index),
            "scenes": self._scenes,
            "model_version": self.model_version,
            "index_dir": index.meta.get("index_dir"),
            "catalog_seq": self.seq,
            "calls": dict(self.calls),
            "replica": context.replica_id.unique_id if context else None,
        }
