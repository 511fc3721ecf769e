"""Word overlap between item texts: TF-IDF rows over the catalog's vocabulary.

A profile model maps a text to a few hundred numbers and blurs what is spelled out in it: a
brand, a model number, "1.75mm PETG". Items that share rare words are often bought together
(the same filament in another colour, a spare part for the same printer). ``LexicalVectors`` is
scikit-learn's ``TfidfVectorizer`` (sublinear term frequency, idf over the catalog's item texts,
rows L2-normalised), so the dot product of two rows is their word overlap weighted by rarity.

It needs nothing but text: an item added after the fit, cold included, gets its row from its
own text with the fitted vocabulary (words new to it are ignored). Only the first
``TEXT_CHARS`` characters of a text count, the part a Serve Retriever candidate carries, so the
evaluation and the server compute the same rows.

:func:`lexical_features` gives the fusion (:mod:`coldrec.rank.fusion`) the three history
features of :func:`coldrec.rank.fusion.content_features`, over these rows instead of the
profile model's vectors. Saved as ``lexical.npz`` (the vocabulary in column order and its idf).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

LEXICAL_FILE = "lexical.npz"
LEXICAL_FEATURES = ("lexical_newest", "lexical_mean", "lexical_max")
TEXT_CHARS = 300  # coldrec.serve.retriever.CANDIDATE_TEXT_CHARS: what a candidate carries of its text
_CHUNK_ROWS = 4096  # history rows compared with the candidates at a time


def _vectorizer(vocabulary: dict[str, int] | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(sublinear_tf=True, dtype=np.float32, vocabulary=vocabulary)


def _clip(texts: Sequence[str | None]) -> list[str]:
    return [t[:TEXT_CHARS] if isinstance(t, str) else "" for t in texts]  # None or NaN: no text


class LexicalVectors:
    """TF-IDF rows of texts, with the vocabulary and idf fitted on a catalog's item texts."""

    def __init__(self, vectorizer) -> None:
        self.vectorizer = vectorizer

    @classmethod
    def fit(cls, item_texts: Sequence[str | None]) -> "LexicalVectors":
        texts = _clip(item_texts)
        if not any(t.strip() for t in texts):
            raise ValueError("cannot fit lexical vectors: every item text is empty")
        return cls(_vectorizer().fit(texts))

    @classmethod
    def fit_if_any(cls, item_texts: Sequence[str | None]) -> "LexicalVectors | None":
        """:meth:`fit`, or None when no item has a text (nothing to compare)."""
        return cls.fit(item_texts) if any(t.strip() for t in _clip(item_texts)) else None

    @property
    def vocabulary_size(self) -> int:
        return len(self.vectorizer.vocabulary_)

    def transform(self, texts: Sequence[str | None]) -> sp.csr_matrix:
        """(texts, vocabulary) L2-normalised rows (a text with no known word: a zero row)."""
        if not len(texts):  # scikit-learn refuses an empty batch
            return sp.csr_matrix((0, self.vocabulary_size), dtype=np.float32)
        return self.vectorizer.transform(_clip(texts)).tocsr()

    def save(self, folder: str | Path) -> Path:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        vocabulary = self.vectorizer.vocabulary_
        terms = np.asarray(sorted(vocabulary, key=vocabulary.get), dtype=str)
        np.savez_compressed(path / LEXICAL_FILE, terms=terms, idf=self.vectorizer.idf_.astype(np.float64))
        return path / LEXICAL_FILE

    @classmethod
    def load(cls, folder: str | Path) -> "LexicalVectors":
        with np.load(Path(folder) / LEXICAL_FILE) as z:
            terms, idf = [str(t) for t in z["terms"]], z["idf"]
        vectorizer = _vectorizer({t: i for i, t in enumerate(terms)})
        vectorizer.idf_ = idf  # fitted: the vocabulary is given, and this is its idf
        return cls(vectorizer)

    @classmethod
    def load_if_present(cls, folder: str | Path) -> "LexicalVectors | None":
        """The saved vectors, or None for a reranker fitted before they existed."""
        return cls.load(folder) if (Path(folder) / LEXICAL_FILE).is_file() else None


class RowCache:
    """:meth:`LexicalVectors.transform` that remembers each text's row: the Serve Reranker sees the
    same catalog candidates request after request, and tokenising 100 of them costs milliseconds.
    Keyed by the text itself, so an edited item gets a new row; cleared when ``max_texts`` is reached.
    """

    def __init__(self, lexical: LexicalVectors, max_texts: int = 100_000) -> None:
        self.lexical, self.max_texts = lexical, max_texts
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # clipped text -> (indices, data)

    def transform(self, texts: Sequence[str | None]) -> sp.csr_matrix:
        parts = self._parts(texts)
        indptr = np.concatenate([[0], np.cumsum([len(i) for i, _ in parts])])
        indices = np.concatenate([i for i, _ in parts]) if parts else np.zeros(0, np.int32)
        data = np.concatenate([d for _, d in parts]) if parts else np.zeros(0, np.float32)
        return sp.csr_matrix((data, indices, indptr), shape=(len(parts), self.lexical.vocabulary_size))

    def dots(self, query: sp.csr_matrix, texts: Sequence[str | None]) -> np.ndarray:
        """(len(texts),) the dot product of ``query``, one (1, vocabulary) row, with each text's row:
        ``(query @ transform(texts).T)[0]`` without building either sparse product, which costs a
        Serve request with 100 candidates most of its reranking time."""
        parts = self._parts(texts)
        if not parts or query.nnz == 0:
            return np.zeros(len(parts), dtype=np.float32)
        dense = np.zeros(self.lexical.vocabulary_size, dtype=np.float32)  # the query, spread out
        dense[query.indices] = query.data
        indices, data = np.concatenate([i for i, _ in parts]), np.concatenate([d for _, d in parts])
        ends = np.cumsum([len(i) for i, _ in parts])  # each text's products end here
        totals = np.concatenate([[0.0], np.cumsum(dense[indices] * data, dtype=np.float64)])
        return (totals[ends] - totals[np.concatenate([[0], ends[:-1]])]).astype(np.float32)

    def overlaps(self, texts: Sequence[str | None], others: Sequence[str | None]) -> np.ndarray:
        """(len(texts), len(others)) float32 dot products of the two lists' rows, ``transform(texts) @
        transform(others).T`` without building a sparse matrix: a Serve request compares its few history
        items with its 100 candidates, and the sparse route cost it about ten matrix constructions.
        ``texts`` are spread out over the words they use; each of ``others``' entries finds its word there."""
        parts, other_parts = self._parts(texts), self._parts(others)
        indices = np.concatenate([i for i, _ in parts]) if parts else np.zeros(0, np.int32)
        words = np.unique(indices)  # the words of ``texts``, sorted: their columns in ``dense``
        if not len(words) or not other_parts:  # no word of the vocabulary in ``texts``, or no others
            return np.zeros((len(parts), len(other_parts)), dtype=np.float32)
        dense = np.zeros((len(parts), len(words)), dtype=np.float32)
        dense[np.repeat(np.arange(len(parts)), [len(i) for i, _ in parts]), np.searchsorted(words, indices)] = (
            np.concatenate([d for _, d in parts]))
        other_indices = np.concatenate([i for i, _ in other_parts])
        other_data = np.concatenate([d for _, d in other_parts])
        owner = np.repeat(np.arange(len(other_parts)), [len(i) for i, _ in other_parts])
        at = np.minimum(np.searchsorted(words, other_indices), len(words) - 1)
        shared = words[at] == other_indices  # entries whose word ``texts`` use
        products = dense[:, at[shared]] * other_data[shared]  # (len(texts), shared entries)
        flat = (np.arange(len(parts))[:, None] * len(other_parts) + owner[shared][None, :]).ravel()
        sums = np.bincount(flat, weights=products.ravel(), minlength=len(parts) * len(other_parts))
        return sums.reshape(len(parts), len(other_parts)).astype(np.float32)

    def _parts(self, texts: Sequence[str | None]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each text's (indices, data), tokenising only the texts not seen before."""
        clipped = _clip(texts)
        missing = [t for t in dict.fromkeys(clipped) if t not in self._rows]
        if missing:
            if len(self._rows) + len(missing) > self.max_texts:
                self._rows.clear()  # then this call's texts that were kept are gone too: read them all again
                missing = list(dict.fromkeys(clipped))
            rows = self.lexical.transform(missing)
            for j, text in enumerate(missing):
                lo, hi = rows.indptr[j], rows.indptr[j + 1]
                self._rows[text] = (rows.indices[lo:hi].copy(), rows.data[lo:hi].copy())
        return [self._rows[t] for t in clipped]


def lexical_features(histories: Sequence[sp.csr_matrix], candidates: sp.csr_matrix, decay: float,
                     max_items: int, own: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``lexical_newest``, ``lexical_mean``, ``lexical_max``: each (queries, candidates), zero for a
    query with no history.

    ``histories[q]``: (h_q, vocabulary) rows of query q's history items, newest first, each once
    (:func:`coldrec.rank.fusion.history_vectors` of the catalog's rows); ``candidates``:
    (candidates, vocabulary). Newest: the overlap with the newest item; mean: with every item,
    weighted 1, decay, decay^2, ... from the newest; max: the best with one of the newest
    ``max_items``. ``own[q]``: (h_q,) the candidate index of each history item itself (-1: not a
    candidate); an item's overlap with itself counts 0, so a history item scores by its words in
    common with the *other* history items (whether it is already in the history is ``unseen``'s).
    """
    queries, width = len(histories), candidates.shape[0]
    out = {name: np.zeros((queries, width), dtype=np.float32) for name in LEXICAL_FEATURES}
    candidates_t = sp.csr_matrix(candidates, dtype=np.float32).T.tocsr()
    q = 0
    while q < queries:  # a chunk of queries whose history rows fit _CHUNK_ROWS (at least one query)
        end, rows = q, 0
        while end < queries and (end == q or rows + histories[end].shape[0] <= _CHUNK_ROWS):
            rows += histories[end].shape[0]
            end += 1
        if rows:
            sims = (sp.vstack([histories[i] for i in range(q, end)]).tocsr() @ candidates_t).toarray()
            start = 0
            for i in range(q, end):
                h = histories[i].shape[0]
                if h:
                    for name, value in history_overlap_features(sims[start : start + h], decay, max_items,
                                                                None if own is None else own[i]).items():  # fmt: skip
                        out[name][i] = value[0]
                start += h
        q = end
    return out


def history_overlap_features(block: np.ndarray, decay: float, max_items: int,
                             own: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """:func:`lexical_features` of one query, (1, candidates) each, from ``block`` (h, candidates), the
    overlaps of its h history rows (newest first, each once) with the candidates (changed in place:
    ``own`` as there)."""
    if not len(block):
        return {name: np.zeros((1, block.shape[1]), dtype=np.float32) for name in LEXICAL_FEATURES}
    if own is not None:
        mine = np.asarray(own)
        rows_in = np.flatnonzero(mine >= 0)
        block[rows_in, mine[rows_in]] = 0.0  # never an item's overlap with itself
    weights = decay ** np.arange(len(block), dtype=np.float32)
    return {"lexical_newest": block[:1], "lexical_mean": (weights @ block / weights.sum())[None],
            "lexical_max": block[:max_items].max(axis=0)[None]}
