"""Choosing, training and tuning the FAISS index behind an ItemIndex.

``factory="auto"`` means exact search (``Flat``) up to ``IndexConfig.exact_max_items`` items and an
inverted-file index (``IVF{nlist},Flat``) above it. IVF is chosen over HNSW because the live
catalog deletes items and HNSW cannot remove; HNSW stays available as an explicit factory string.

Training is bounded: the coarse quantizer's k-means sees at most ``train_points_per_list * nlist``
catalog vectors, sampled with a fixed seed. Tuning picks the smallest search parameter (IVF
``nprobe``, HNSW ``efSearch``) whose recall@k against exact search reaches the target on a sample
of catalog vectors used as queries (each query's own item is dropped from both result lists,
so a query does not find itself for free). Catalog vectors stand in for user vectors because
none exist at build time; they come from the same embedding space, and the benchmark checks
the chosen value on separate queries.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)

# nlist stays within these bounds: fewer lists than 16 is hardly faster than Flat; more than
# 65536 makes the coarse quantizer itself a large exact search.
MIN_NLIST, MAX_NLIST = 16, 65536
# FAISS's k-means warns below 39 training points per centroid.
MIN_POINTS_PER_LIST = 39


@dataclass(frozen=True)
class Tuning:
    """The chosen search parameter and what it measured on the tuning queries."""

    params: dict[str, int]  # e.g. {"nprobe": 24}; {} for exact indexes
    recall: float  # mean recall@k against exact search
    recall_low: float  # recall - 2 standard errors: the value compared with the target
    queries: int
    k: int
    target: float

    def as_meta(self) -> dict:
        return {"recall_at_k": round(self.recall, 4), "recall_low": round(self.recall_low, 4),
                "queries": self.queries, "k": self.k, "target": self.target}


def ivf_nlist(n_items: int) -> int:
    """About 4 * sqrt(n) lists (FAISS's guideline is 4-16 * sqrt(n)), each with enough training points."""
    nlist = int(round(4 * math.sqrt(max(n_items, 1))))
    nlist = min(nlist, max(1, n_items // MIN_POINTS_PER_LIST))
    return max(MIN_NLIST, min(MAX_NLIST, nlist))


def choose_factory(factory: str, n_items: int, exact_max_items: int) -> str:
    """The concrete FAISS factory string: ``factory`` as is, or the automatic choice for ``n_items``."""
    if factory != "auto":
        return factory
    if n_items <= exact_max_items:
        return "Flat"
    return f"IVF{ivf_nlist(n_items)},Flat"


def is_ivf(factory: str) -> bool:
    return "IVF" in factory.upper()


def train_sample(vectors: np.ndarray, nlist: int, points_per_list: int, seed: int = 0) -> np.ndarray:
    """At most ``points_per_list * nlist`` rows of ``vectors`` (n, dim), chosen with ``seed``."""
    limit = max(MIN_POINTS_PER_LIST, points_per_list) * nlist
    if len(vectors) <= limit:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=limit, replace=False))
    return np.ascontiguousarray(vectors[rows])


def search_param_name(index: faiss.Index) -> str | None:
    """The knob that trades recall for speed: nprobe (IVF), efSearch (HNSW), None (exact)."""
    if faiss.try_extract_index_ivf(index) is not None:
        return "nprobe"
    inner = index.index if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(faiss.downcast_index(inner), faiss.IndexHNSW):
        return "efSearch"
    return None


def set_search_params(index: faiss.Index, params: dict[str, int]) -> None:
    space = faiss.ParameterSpace()  # reaches through IDMap2 and pre-transforms
    for name, value in params.items():
        space.set_index_parameter(index, name, int(value))


def candidate_values(name: str, index: faiss.Index) -> list[int]:
    """Values to try, smallest first: powers of two and 1.5 times them (1, 2, 3, 4, 6, 8, 12, ...)."""
    top = faiss.try_extract_index_ivf(index).nlist if name == "nprobe" else 1024
    start = 1 if name == "nprobe" else 16
    values, p = [], start
    while p < top:
        values += [p, p * 3 // 2] if p >= 2 else [p]
        p *= 2
    values = [v for v in values if v < top]
    return sorted(set(values) | {top})


def recall_at_k(index: faiss.Index, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray,
                k: int, params: dict[str, int]) -> np.ndarray:
    """Per-query recall@k of ``index`` under ``params`` against ``truth`` (q, k) ids, self ids dropped."""
    set_search_params(index, params)
    _, found = index.search(queries, k + 1)  # (q, k + 1)
    recalls = np.empty(len(queries))
    for i, (row, own) in enumerate(zip(found, query_ids)):
        got = [j for j in row if j != own and j >= 0][:k]
        recalls[i] = len(set(got) & set(truth[i].tolist())) / k
    return recalls


def tune(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, target: float, k: int = 10,
         num_queries: int = 1000, seed: int = 0) -> Tuning:
    """Smallest search parameter reaching ``target`` recall@k; the index is left set to it.

    ``vectors`` (n, dim) are the indexed vectors and ``ids`` (n,) their FAISS ids. Recall is
    monotone in nprobe (a larger nprobe scans a superset of lists), so a search over the
    candidate values finds the smallest one; for HNSW it is near enough monotone. Without a
    value that reaches the target the largest is kept (and a warning logged).
    """
    name = search_param_name(index)
    q = min(num_queries, len(vectors) - k - 1)
    if name is None or q <= 0:
        return Tuning({}, 1.0, 1.0, 0, k, target)
    rows = np.random.default_rng(seed + 1).choice(len(vectors), size=q, replace=False)
    queries = np.ascontiguousarray(vectors[rows])
    _, exact = faiss.knn(queries, vectors, k + 1, faiss.METRIC_INNER_PRODUCT)  # (q, k + 1) row numbers
    truth = np.stack([[ids[j] for j in row if j != r][:k] for row, r in zip(exact, rows)])  # (q, k)
    own = ids[rows]

    values = candidate_values(name, index)
    measured: dict[int, np.ndarray] = {}

    def low(i: int) -> float:
        if values[i] not in measured:
            measured[values[i]] = recall_at_k(index, queries, own, truth, k, {name: values[i]})
        r = measured[values[i]]
        # two standard errors below the mean: a value chosen on these queries should hold on others
        return float(r.mean() - 2 * r.std() / math.sqrt(len(r)))

    # Gallop up from the cheapest value (large ones are slow to measure), then bisect.
    last, failed, i = len(values) - 1, -1, 0
    while low(i) < target and i < last:
        failed, i = i, min(last, 2 * i + 1)
    if low(i) < target:
        log.warning("no %s reaches recall@%d %.3f (best %.4f at %d)", name, k, target, low(i), values[i])
    lo, hi = failed + 1, i
    while lo < hi:
        mid = (lo + hi) // 2
        if low(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = values[lo]
    low(lo)
    set_search_params(index, {name: best})
    r = measured[best]
    return Tuning({name: best}, float(r.mean()), low(lo), q, k, target)
