"""Classic baselines behind the scorer signature of :mod:`coldrec.eval.scorers`.

Each fits on the protocol's training examples (rows of user_id, history, target) and
returns a scorer: DataFrame of evaluation examples -> (users, items) scores over the
catalog order given by ``item_ids``.

The ID-based models (item-kNN, EASE) know only items that occur in training; every
other item gets ``-inf``, the minimum score, so with ties broken against the target
(:func:`coldrec.eval.metrics.target_ranks`) a never-seen (cold) item is ranked below
every known one: these models cannot recommend cold items, and the numbers show it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coldrec.eval.scorers import Scorer


def _positions(item_ids: Sequence[str]) -> dict[str, int]:
    return {item_id: i for i, item_id in enumerate(item_ids)}


def user_item_matrix(train: pd.DataFrame, item_ids: Sequence[str],
                     return_users: bool = False) -> sp.csr_matrix | tuple[sp.csr_matrix, np.ndarray]:
    """(train users, items) 0/1: every item a user has in any training row (history or target).

    With ``return_users``, also the user id of each row (sorted; users without a catalog item have none).
    """
    position = _positions(item_ids)
    hist = train[["user_id", "history"]].explode("history").rename(columns={"history": "item_id"})
    pairs = pd.concat([hist, train[["user_id", "target"]].rename(columns={"target": "item_id"})])
    pairs = pairs.dropna().drop_duplicates()
    cols = pairs["item_id"].map(position)
    pairs, cols = pairs[cols.notna()], cols[cols.notna()].astype(np.int64)
    users, rows = np.unique(pairs["user_id"].to_numpy(), return_inverse=True)
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols.to_numpy())), shape=(len(users), len(item_ids)))
    return (matrix, users) if return_users else matrix


def history_weights(histories: Sequence[Sequence[str]], position: dict[str, int], n_items: int,
                    decay: float = 1.0) -> np.ndarray:
    """(users, items) weights of each user's history: newest 1, then decay, decay^2, ..."""
    out = np.zeros((len(histories), n_items), dtype=np.float32)
    for r, hist in enumerate(histories):
        for age, item_id in enumerate(reversed(list(hist))):
            col = position.get(item_id)
            if col is not None:
                out[r, col] = max(out[r, col], decay**age)  # a repeated item keeps its newest weight
    return out


def _floor_unseen(scores: np.ndarray, unseen: np.ndarray) -> np.ndarray:
    scores[:, unseen] = -np.inf
    return scores


class ItemKNN:
    """Cosine item-item similarity of co-occurrence in training users' item sets.

    sim(i, j) = C_ij / sqrt(C_ii C_jj), C = X^T X, X the user-item 0/1 matrix; a user's
    score for j is sum over history items h of w_h * sim(h, j), w recency-weighted.
    """

    def __init__(self, train: pd.DataFrame, item_ids: Sequence[str]):
        self.item_ids = list(item_ids)
        self.position = _positions(self.item_ids)
        x = user_item_matrix(train, self.item_ids)
        co = (x.T @ x).toarray().astype(np.float32)  # (items, items): a dense 4.4k^2 fits easily
        n = np.diag(co).copy()
        norm = np.sqrt(np.maximum(n, 1.0))
        self.sim = co / norm[:, None] / norm[None, :]
        np.fill_diagonal(self.sim, 0.0)
        self.unseen = n == 0

    def scorer(self, decay: float = 1.0) -> Scorer:
        def score(batch: pd.DataFrame) -> np.ndarray:
            weights = history_weights(batch["history"], self.position, len(self.item_ids), decay)
            return _floor_unseen(weights @ self.sim, self.unseen)  # (batch, items)

        return score


class EASE:
    """EASE (Steck, 2019): B = I - P diag(1/diag(P)), P = (X^T X + lambda I)^-1, zero diagonal.

    The Gram matrix is built once; each lambda costs one dense inverse (items^3).
    """

    def __init__(self, train: pd.DataFrame, item_ids: Sequence[str]):
        self.item_ids = list(item_ids)
        self.position = _positions(self.item_ids)
        x = user_item_matrix(train, self.item_ids)
        self.gram = (x.T @ x).toarray().astype(np.float64)  # (items, items)
        self.unseen = np.diag(self.gram) == 0

    def weights(self, lam: float) -> np.ndarray:
        g = self.gram.copy()
        g[np.diag_indices_from(g)] += lam
        p = np.linalg.inv(g)
        b = p / (-np.diag(p))[None, :]
        np.fill_diagonal(b, 0.0)
        return b.astype(np.float32)

    def scorer(self, lam: float) -> Scorer:
        b = self.weights(lam)

        def score(batch: pd.DataFrame) -> np.ndarray:
            x = history_weights(batch["history"], self.position, len(self.item_ids))  # 0/1
            return _floor_unseen(x @ b, self.unseen)

        return score


_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str | None) -> list[str]:
    return _TOKEN.findall((text or "").lower())


class BM25:
    """BM25 (rank_bm25's Okapi) of a query text against every item text.

    rank_bm25 walks the whole corpus per query word; here each word's score vector over
    the catalog is computed once and cached, which gives the same scores much faster.
    """

    def __init__(self, item_texts: Sequence[str]):
        from rank_bm25 import BM25Okapi

        docs = [tokenize(t) for t in item_texts]
        self.bm25 = BM25Okapi([d if d else [""] for d in docs])  # an empty doc would break idf
        self.doc_len = np.asarray(self.bm25.doc_len, dtype=np.float64)
        self._cache: dict[str, np.ndarray] = {}

    def word_scores(self, word: str) -> np.ndarray:
        if word not in self._cache:
            bm = self.bm25
            tf = np.array([doc.get(word, 0) for doc in bm.doc_freqs], dtype=np.float64)
            denom = tf + bm.k1 * (1 - bm.b + bm.b * self.doc_len / bm.avgdl)
            self._cache[word] = (bm.idf.get(word) or 0.0) * tf * (bm.k1 + 1) / denom
        return self._cache[word]

    def scores(self, query: str) -> np.ndarray:
        out = np.zeros(len(self.doc_len), dtype=np.float64)
        for word in tokenize(query):  # repeated words count again, as in rank_bm25
            out += self.word_scores(word)
        return out

    def scorer(self, query_column: str = "profile_text") -> Scorer:
        def score(batch: pd.DataFrame) -> np.ndarray:
            return np.stack([self.scores(q) for q in batch[query_column]]).astype(np.float32)

        return score
