"""CandidateList: the Retriever's candidates for one query, cheap to send to the Reranker.

A candidate is {item_id, title, text, score, vector}, ``vector`` a float16 (dim,) array. Ray
serializes every numpy array as a buffer of its own: the 100 small vectors of one answer cost
about 0.6 ms of CPU to serialize and as much again to read back, more than the search itself.
A CandidateList is a plain list of those dicts that pickles their vectors as one (n, dim) block
and unpickles them as that block's rows, so the receiver sees the same dicts and the same values.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class CandidateList(list):
    """A list of candidate dicts; pickled with their vectors stacked when they are all alike."""

    def __reduce__(self):
        vectors = [c.get("vector") if isinstance(c, dict) else None for c in self]
        if not _alike(vectors):
            return (CandidateList, (list(self),))
        rows = [{**c, "vector": None} for c in self]  # the block below carries the vectors
        # concatenate, not stack: stack's per-array reshaping cost more than the rest of the pickling
        return (_with_vectors, (rows, np.concatenate(vectors).reshape(len(vectors), -1)))  # (n, dim)


def _alike(vectors: list[Any]) -> bool:
    """Whether ``vectors`` (one per candidate) are 1-d arrays of one dtype and length, so they stack."""
    if not vectors or not all(isinstance(v, np.ndarray) and v.ndim == 1 for v in vectors):
        return False
    return len({(v.dtype, v.shape) for v in vectors}) == 1


def _with_vectors(rows: list[dict[str, Any]], vectors: np.ndarray) -> CandidateList:
    """The unpickled list: row i gets ``vectors[i]`` (a view of the block) back as its vector."""
    for row, vector in zip(rows, vectors):
        row["vector"] = vector
    return CandidateList(rows)
