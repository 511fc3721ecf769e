"""The retrieval class: a FAISS inner-product index over item vectors, keyed by string item ids.

A saved index is a folder::

    <output_dir>/<scene>/<model_version>/
      items.faiss      an inner-product FAISS index whose ids are ``faiss_id``: an IVF index holds
                       them itself (so it can remove), any other is wrapped in faiss.IndexIDMap2
      items.parquet    one row per item: faiss_id, item_id, scene, title, text, ...
      meta.json        model_path, model_version, dim, count, factory, search_params, tuning, ...
    <output_dir>/<scene>/LATEST   the name of the version folder to serve

FAISS ids must be int64, so every item gets ``faiss_id = stable_faiss_id(item_id)``: a hash of the
string id, the same in every build and independent of row order, so an upsert needs no counter.
Vectors are the encoder's unit vectors; the inner product is then the cosine similarity.

``factory="auto"`` picks exact or IVF search by catalog size and tunes nprobe at build time
(see ``factory``); ``meta["search_params"]`` is applied on load, so every replica searches alike.
``load(..., device="gpu"|"auto")`` searches on a GPU copy (see ``gpu``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from coldrec.config import IndexConfig
from coldrec.index.factory import choose_factory, search_param_name, set_search_params, train_sample, tune
from coldrec.index.gpu import GPU_MAX_K, GpuCopy, resolve_device

INDEX_FILE = "items.faiss"
ITEMS_FILE = "items.parquet"
META_FILE = "meta.json"
LATEST_FILE = "LATEST"


def stable_faiss_id(item_id: str) -> int:
    """A non-negative int63 derived from the item id (collisions are checked on add)."""
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def resolve_index_dir(path: str | Path) -> Path:
    """A version folder as is, or the folder its parent's ``LATEST`` file names."""
    path = Path(path).expanduser().resolve()
    if (path / META_FILE).is_file():
        return path
    latest = path / LATEST_FILE
    if latest.is_file():
        version_dir = path / latest.read_text().strip()
        if (version_dir / META_FILE).is_file():
            return version_dir
        raise FileNotFoundError(f"{latest} names {version_dir.name!r}, which holds no {META_FILE}")
    raise FileNotFoundError(f"{path} is neither an index version folder ({META_FILE}) nor holds {LATEST_FILE}")


def write_latest(version_dir: Path) -> None:
    """Point ``<parent>/LATEST`` at ``version_dir`` (a rename, so readers never see half a name)."""
    tmp = version_dir.parent / f".{LATEST_FILE}.{os.getpid()}"
    tmp.write_text(version_dir.name + "\n")
    os.replace(tmp, version_dir.parent / LATEST_FILE)


class ItemIndex:
    """Item vectors plus their rows; every public method holds one lock, so a Serve replica can share it."""

    def __init__(self, index: faiss.Index, rows: pd.DataFrame, meta: dict[str, Any]):
        self._index = index
        self._lock = threading.RLock()
        self._gpu: GpuCopy | None = None
        self.meta = dict(meta)
        # IVF indexes only reconstruct (and remove) ids through a direct map; a hash map keeps
        # both possible with our sparse int63 ids.
        self._ivf = faiss.try_extract_index_ivf(index)
        if self._ivf is not None and self._ivf.direct_map.type != faiss.DirectMap.Hashtable:
            self._ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        if self.meta.get("search_params"):
            set_search_params(index, self.meta["search_params"])
        records = rows.to_dict("records")
        self._rows: dict[int, dict[str, Any]] = {int(r["faiss_id"]): r for r in records}
        self._fid: dict[str, int] = {r["item_id"]: int(r["faiss_id"]) for r in records}

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def create(cls, dim: int, factory: str = "Flat", meta: dict[str, Any] | None = None) -> "ItemIndex":
        """An empty index (``"auto"`` means Flat here: an empty catalog is small)."""
        factory = choose_factory(factory, 0, exact_max_items=0)
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        # IVF stores any int64 id itself; IndexIDMap2 over IVF could not remove through the hash map.
        index = inner if faiss.try_extract_index_ivf(inner) is not None else faiss.IndexIDMap2(inner)
        meta = {**(meta or {}), "dim": dim, "factory": factory}
        return cls(index, pd.DataFrame({"faiss_id": [], "item_id": []}), meta)

    @classmethod
    def build(cls, rows: pd.DataFrame, vectors: np.ndarray, factory: str | None = None,
              meta: dict | None = None, config: IndexConfig | None = None) -> "ItemIndex":
        """A new index over ``rows`` (needs item_id; row i goes with ``vectors[i]``, shape (n, dim)).

        ``factory``: a FAISS factory string or "auto" (default ``config.factory``). Trainable
        indexes are trained on a bounded sample; IVF/HNSW get the smallest nprobe/efSearch that
        reaches ``config.target_recall`` recall@10, recorded in ``meta["search_params"]``.
        """
        config = config or IndexConfig()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        requested = factory or config.factory
        chosen = choose_factory(requested, len(vectors), config.exact_max_items)
        index = cls.create(vectors.shape[1], chosen, {**(meta or {}), "factory_requested": requested})
        timings: dict[str, float] = {}
        start = time.perf_counter()
        if not index._index.is_trained:
            if len(vectors) == 0:
                raise ValueError(f"FAISS factory {chosen!r} needs training vectors, the catalog is empty")
            lists = index._ivf.nlist if index._ivf is not None else len(vectors)
            index._index.train(train_sample(vectors, lists, config.train_points_per_list, config.seed))
            timings["train_s"] = time.perf_counter() - start
        start = time.perf_counter()
        index.upsert(rows, vectors)
        timings["add_s"] = time.perf_counter() - start
        if search_param_name(index._index) is not None:
            start = time.perf_counter()
            fids = np.array([stable_faiss_id(str(i)) for i in rows["item_id"]], dtype=np.int64)
            tuning = tune(index._index, vectors, fids, config.target_recall, k=10,
                          num_queries=config.tune_queries, seed=config.seed)
            index.meta["search_params"] = tuning.params
            index.meta["tuning"] = tuning.as_meta()
            timings["tune_s"] = time.perf_counter() - start
        index.meta["build_seconds"] = {key: round(value, 3) for key, value in timings.items()}
        return index

    @classmethod
    def load(cls, index_dir: str | Path, device: str = "cpu") -> "ItemIndex":
        """Load a version folder, or the version its ``LATEST`` names; ``device``: see ``use_device``."""
        path = resolve_index_dir(index_dir)
        meta = json.loads((path / META_FILE).read_text())
        index = faiss.read_index(str(path / INDEX_FILE))
        rows = pd.read_parquet(path / ITEMS_FILE)
        item = cls(index, rows, meta)
        item.meta["index_dir"] = str(path)
        item.use_device(device)
        return item

    def use_device(self, device: str = "auto") -> str:
        """Search on ``"cpu"``, ``"gpu"`` (error without one) or ``"auto"``; returns the device used.

        On a GPU the CPU index still takes every write and answers vector(); see ``gpu``.
        """
        resolved = resolve_device(device)
        with self._lock:
            self._gpu = GpuCopy(self._index) if resolved == "gpu" else None
        return resolved

    @property
    def device(self) -> str:
        return "cpu" if self._gpu is None else "gpu"

    def save(self, index_dir: str | Path) -> Path:
        path = Path(index_dir)
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            faiss.write_index(self._index, str(path / INDEX_FILE))
            self.rows().to_parquet(path / ITEMS_FILE, index=False)
            meta = {k: v for k, v in self.meta.items() if k != "index_dir"}
            meta["index_type"] = type(faiss.downcast_index(self._index)).__name__
            meta["count"] = len(self)
            (path / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return path

    # ---- reads --------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self._index.d)

    def __len__(self) -> int:
        with self._lock:
            return int(self._index.ntotal)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._fid

    def rows(self) -> pd.DataFrame:
        with self._lock:
            frame = pd.DataFrame(list(self._rows.values()), columns=None if self._rows else ["faiss_id", "item_id"])
        return frame[["faiss_id"] + [c for c in frame.columns if c != "faiss_id"]]

    def get(self, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            fid = self._fid.get(item_id)
            return None if fid is None else dict(self._rows[fid])

    def vector(self, item_id: str) -> np.ndarray:
        """The stored vector, shape (dim,) (exact for flat indexes, decoded for compressed ones)."""
        with self._lock:
            if item_id not in self._fid:
                raise KeyError(item_id)
            return self._index.reconstruct(self._fid[item_id])

    def vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of ``item_ids``, shape (len(item_ids), dim), as :meth:`vector` gives
        each, in one FAISS call (a serving answer reads ~100 of them)."""
        with self._lock:
            missing = [i for i in item_ids if i not in self._fid]
            if missing:
                raise KeyError(missing[0])
            return self._index.reconstruct_batch(np.array([self._fid[i] for i in item_ids], dtype=np.int64))

    def search(
        self,
        query_vectors: np.ndarray,
        k: int,
        exclude: Sequence[Iterable[str]] | None = None,
        scene: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top ``k`` (item_id, score) per query row, best first.

        ``query_vectors``: (n, dim) or (dim,). ``exclude[i]``: item ids never returned for query i.
        ``scene``: keep only items of that scene; ``where(row)``: keep only rows it returns true for.
        Filters are applied after FAISS: all queries are searched in one batch for ``k`` plus the
        largest exclude set, and a query left short widens alone, fetching more ids and, for IVF,
        probing more lists once the probed ones are exhausted (FAISS pads those results with -1),
        until it has ``k`` survivors or has seen the whole catalog.
        """
        queries = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query vectors have dim {queries.shape[1]}, the index has {self.dim}")
        excluded = [set(e) for e in exclude] if exclude is not None else [set()] * len(queries)
        if len(excluded) != len(queries):
            raise ValueError(f"exclude has {len(excluded)} entries for {len(queries)} queries")
        with self._lock:
            total = int(self._index.ntotal)
            fetch = min(total, k + max((len(skip) for skip in excluded), default=0))
            if fetch <= 0 or k <= 0:
                return [[] for _ in range(len(queries))]
            scores, ids = self._raw_search(queries, fetch)  # (n, fetch) each
            results: list[list[tuple[str, float]]] = []
            for query, skip, row_scores, row_ids in zip(queries, excluded, scores, ids):
                hits = self._keep(row_scores, row_ids, skip, scene, where)
                hits = self._widen(query, k, fetch, int((row_ids >= 0).sum()), hits, skip, scene, where)
                results.append(hits[:k])
            return results

    def _widen(self, query: np.ndarray, k: int, fetch: int, returned: int, hits: list, skip: set[str], scene, where):
        """``hits`` of one query (dim,), searched again wider while fewer than ``k`` survive."""
        total = int(self._index.ntotal)
        nprobe = None if self._ivf is None else int(self._ivf.nprobe)
        while len(hits) < k:  # every pass grows fetch or nprobe, both bounded, so this ends
            if returned < fetch:  # IVF: the probed lists hold fewer than fetch items
                if nprobe is None or nprobe >= self._ivf.nlist:
                    break
                nprobe = min(int(self._ivf.nlist), nprobe * 4)
            elif fetch < total:
                fetch = min(total, fetch * 4)
            else:
                break
            scores, ids = self._raw_search(query[None, :], fetch, nprobe)
            returned = int((ids[0] >= 0).sum())
            hits = self._keep(scores[0], ids[0], skip, scene, where)
        return hits

    def _raw_search(self, queries: np.ndarray, fetch: int, nprobe: int | None = None):
        """FAISS (scores, ids), each (n, fetch): on the GPU copy when there is one and it can."""
        if self._gpu is not None and nprobe is None and fetch <= GPU_MAX_K:
            return self._gpu.search(self._index, queries, fetch)
        params = None if nprobe is None else faiss.SearchParametersIVF(nprobe=nprobe)
        return self._index.search(queries, fetch, params=params)

    def _keep(self, scores: np.ndarray, ids: np.ndarray, skip: set[str], scene: str | None, where=None):
        hits = []
        for score, fid in zip(scores, ids):
            row = self._rows.get(int(fid))  # -1 (fewer hits than asked) finds nothing
            if row is None or row["item_id"] in skip or (scene is not None and row.get("scene") != scene):
                continue
            if where is not None and not where(row):
                continue
            hits.append((row["item_id"], float(score)))
        return hits

    # ---- writes -------------------------------------------------------------------------
    def upsert(self, rows: pd.DataFrame | list[dict[str, Any]], vectors: np.ndarray) -> int:
        """Add items, replacing any with the same item_id; row i goes with ``vectors[i]`` (n, dim)."""
        frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if "item_id" not in frame.columns and len(frame):
            raise ValueError("upsert rows need an item_id")
        if len(frame) != len(vectors):
            raise ValueError(f"{len(frame)} rows but {len(vectors)} vectors")
        if len(frame) and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have dim {vectors.shape[1]}, the index has {self.dim}")
        if len(frame) and frame["item_id"].duplicated().any():
            raise ValueError("upsert got the same item_id twice")
        records = frame.to_dict("records")
        fids = np.array([stable_faiss_id(str(r["item_id"])) for r in records], dtype=np.int64)
        with self._lock:
            self.remove([str(r["item_id"]) for r in records])
            for fid, record in zip(fids, records):
                if int(fid) in self._rows:
                    other = self._rows[int(fid)]["item_id"]
                    raise ValueError(f"faiss_id collision between {record['item_id']!r} and {other!r}")
            if len(records):
                self._index.add_with_ids(vectors, fids)
                if self._gpu is not None:
                    self._gpu.add(vectors, fids)
            for fid, record in zip(fids, records):
                record = {**record, "item_id": str(record["item_id"]), "faiss_id": int(fid)}
                self._rows[int(fid)] = record
                self._fid[record["item_id"]] = int(fid)
        return len(records)

    add = upsert

    def remove(self, item_ids: Iterable[str]) -> int:
        """Drop items by id (unknown ids are ignored); returns how many were removed."""
        with self._lock:
            fids = [self._fid[i] for i in dict.fromkeys(item_ids) if i in self._fid]
            if not fids:
                return 0
            ids = np.array(fids, dtype=np.int64)
            try:
                # An array selector: the IVF hash direct map removes only through one.
                self._index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))
            except RuntimeError as err:  # e.g. HNSW cannot remove
                raise NotImplementedError(f"FAISS index {self.meta.get('factory')!r} cannot remove items: {err}")
            if self._gpu is not None:
                self._gpu.stale = True
            for fid in fids:
                row = self._rows.pop(fid)
                del self._fid[row["item_id"]]
            return len(fids)
