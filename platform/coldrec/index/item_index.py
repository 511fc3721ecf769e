"""The retrieval class: a FAISS inner-product index over item vectors, keyed by string item ids.

A saved index is a folder::

    <output_dir>/<scene>/<model_version>/
      items.faiss      faiss.IndexIDMap2 over an inner-product index (ids are ``faiss_id``)
      items.parquet    one row per item: faiss_id, item_id, scene, title, text, ...
      meta.json        model_path, model_version, dim, count, factory, built_at, settings, ...
    <output_dir>/<scene>/LATEST   the name of the version folder to serve

FAISS ids must be int64, so every item gets ``faiss_id = stable_faiss_id(item_id)``: a hash of the
string id, the same in every build and independent of row order, so an upsert needs no counter.
Vectors are the encoder's unit vectors; the inner product is then the cosine similarity.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

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

    def __init__(self, index: faiss.IndexIDMap2, rows: pd.DataFrame, meta: dict[str, Any]):
        self._index = index
        self._lock = threading.RLock()
        self.meta = dict(meta)
        # IVF indexes only reconstruct (and remove from) ids through a direct map; a hash map
        # keeps removal possible.
        ivf = faiss.try_extract_index_ivf(index.index)
        if ivf is not None:
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        records = rows.to_dict("records")
        self._rows: dict[int, dict[str, Any]] = {int(r["faiss_id"]): r for r in records}
        self._fid: dict[str, int] = {r["item_id"]: int(r["faiss_id"]) for r in records}

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def create(cls, dim: int, factory: str = "Flat", meta: dict[str, Any] | None = None) -> "ItemIndex":
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        meta = {**(meta or {}), "dim": dim, "factory": factory}
        return cls(faiss.IndexIDMap2(inner), pd.DataFrame({"faiss_id": [], "item_id": []}), meta)

    @classmethod
    def build(cls, rows: pd.DataFrame, vectors: np.ndarray, factory: str = "Flat", meta: dict | None = None):
        """A new index over ``rows`` (needs item_id; row i goes with ``vectors[i]``, shape (n, dim))."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = cls.create(vectors.shape[1], factory, meta)
        if not index._index.is_trained:
            if len(vectors) == 0:
                raise ValueError(f"FAISS factory {factory!r} needs training vectors, the catalog is empty")
            index._index.train(vectors)
        index.upsert(rows, vectors)
        return index

    @classmethod
    def load(cls, index_dir: str | Path) -> "ItemIndex":
        """Load a version folder, or the version its ``LATEST`` names."""
        path = resolve_index_dir(index_dir)
        meta = json.loads((path / META_FILE).read_text())
        index = faiss.read_index(str(path / INDEX_FILE))
        rows = pd.read_parquet(path / ITEMS_FILE)
        item = cls(index, rows, meta)
        item.meta["index_dir"] = str(path)
        return item

    def save(self, index_dir: str | Path) -> Path:
        path = Path(index_dir)
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            faiss.write_index(self._index, str(path / INDEX_FILE))
            self.rows().to_parquet(path / ITEMS_FILE, index=False)
            meta = {k: v for k, v in self.meta.items() if k != "index_dir"}
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
        ``scene``: keep only items of that scene; ``where(row)``: keep only rows it returns true for. Filters are applied after FAISS, so the search
        over-fetches and widens until it has ``k`` survivors or has seen the whole catalog.
        """
        queries = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query vectors have dim {queries.shape[1]}, the index has {self.dim}")
        excluded = [set(e) for e in exclude] if exclude is not None else [set()] * len(queries)
        if len(excluded) != len(queries):
            raise ValueError(f"exclude has {len(excluded)} entries for {len(queries)} queries")
        with self._lock:
            total = int(self._index.ntotal)
            results: list[list[tuple[str, float]]] = []
            for query, skip in zip(queries, excluded):
                fetch = min(total, k + len(skip))
                while True:
                    hits = self._filtered(query, fetch, skip, scene, where)
                    if len(hits) >= k or fetch >= total:
                        break
                    fetch = min(total, fetch * 4)
                results.append(hits[:k])
            return results

    def _filtered(self, query: np.ndarray, fetch: int, skip: set[str], scene: str | None, where=None):
        if fetch <= 0:
            return []
        scores, ids = self._index.search(query[None, :], fetch)
        hits = []
        for score, fid in zip(scores[0], ids[0]):
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
            try:
                self._index.remove_ids(np.array(fids, dtype=np.int64))
            except RuntimeError as err:  # e.g. HNSW cannot remove
                raise NotImplementedError(f"FAISS index {self.meta.get('factory')!r} cannot remove items: {err}")
            for fid in fids:
                row = self._rows.pop(fid)
                del self._fid[row["item_id"]]
            return len(fids)
