"""Behavioural signals of the catalog, learned from training interactions only.

Per-item or per-(user, item) features, each scaled to [0, 1] by something that does not
depend on which candidates are being compared, so the same weights mean the same thing in a
full-ranking evaluation and in the serving reranker's top-N:

- ``behaviour(u, j)``: item-kNN. The recency-weighted mean of cosine co-occurrence similarity
  between item j and the user's history items, sim(i, j) = C_ij / sqrt(C_ii C_jj) with C = X^T X
  over training users' item sets; only each item's ``top_m`` neighbours are kept, so the table
  is sparse and stays small for large catalogs. 0 for history items the signals never saw.
- ``sequence(u, j)``: first-order transitions. P(j follows i) over training examples' (newest
  history item -> target) pairs, for i = the user's newest history item the signals know.
- ``ease(u, j)``: EASE (Steck, 2019) item-item weights B, the mean over the user's recency-
  weighted history rows of B; only when fitted with ``ease_lambda`` (a dense items^2 inverse,
  so for catalogs up to ``EASE_MAX_ITEMS``). Its top_m largest positive weights per row are kept.
- ``rp3(u, j)``: RP3beta (Paudel et al., 2016), a three-step random walk item -> user -> item over
  training users' item sets, P(i -> j) divided by j's interactions to the power ``RP3_BETA`` (so
  that popular items do not win every walk); top_m per row, each row scaled to a maximum of 1,
  then scored as behaviour is; only when fitted with ``rp3``. Item-kNN's cosine normalises the co-occurrence symmetrically; the
  walk normalises it by how many items each user holds, so a user with few items counts more.
- ``unseen(u, j)``: 1 when item j is not in the user's history: a learned weight on it says how
  rarely people buy the same thing again (the full-ranking protocol keeps history items in).
- ``popularity(j)``: log(1 + training interactions) / log(1 + the largest count).
- ``freshness(j)``: 2 ** (-age / half_life), age = ``reference_time`` - the item's first training
  interaction (without timestamps: 0 for every item with training interactions); an item the
  signals never saw (added after the fit, or first seen after the time
  cut) is brand new: freshness 1, behaviour 0, popularity 0.

Saved as one ``signals.npz`` plus ``item_ids`` inside it; loading needs only numpy and scipy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

SIGNALS_FILE = "signals.npz"
EASE_MAX_ITEMS = 30_000  # a dense float64 items^2 inverse: 30k items is 7 GB
FEATURES = ("content", "behaviour", "popularity", "freshness")
RP3_BETA = 0.5  # rp3's popularity penalty: P(i -> j) / count_j ** RP3_BETA


def _user_items(train: pd.DataFrame, position: dict[str, int]) -> sp.csr_matrix:
    """(training users, items) 0/1, items in ``position`` order."""
    from coldrec.eval.baselines import user_item_matrix

    return user_item_matrix(train, sorted(position, key=position.get))


def _row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    rows = np.asarray(m.sum(axis=1)).ravel()
    return (sp.diags(1.0 / np.maximum(rows, 1e-12)) @ m).tocsr()


def _rp3beta(x: sp.csr_matrix, top_m: int, beta: float = RP3_BETA) -> sp.csr_matrix:
    """(items, items) RP3beta of ``x`` (users, items) 0/1: P(item -> user -> item) / count ** beta,
    zero diagonal, the ``top_m`` largest per row, each row scaled to a maximum of 1."""
    x = x.tocsr().astype(np.float32)
    walk = (_row_normalised(x.T.tocsr()) @ _row_normalised(x)).tocsr()  # (items, items) P(i -> j)
    counts = np.asarray(x.sum(axis=0)).ravel()
    walk = (walk @ sp.diags(1.0 / np.maximum(counts, 1.0) ** beta)).tocsr()
    walk.setdiag(0.0)
    walk.eliminate_zeros()
    walk = _top_m(walk, top_m)
    peak = walk.max(axis=1).toarray().ravel()  # the entries are positive: each row's largest
    return (sp.diags(1.0 / np.maximum(peak, 1e-12)) @ walk).tocsr().astype(np.float32)


def _top_m(sim: sp.csr_matrix, m: int) -> sp.csr_matrix:
    """Keep the ``m`` largest entries of every row (ties: any)."""
    sim = sim.tocsr()
    rows, cols, vals = [], [], []
    for r in range(sim.shape[0]):
        lo, hi = sim.indptr[r], sim.indptr[r + 1]
        data, idx = sim.data[lo:hi], sim.indices[lo:hi]
        if len(data) > m:
            keep = np.argpartition(-data, m - 1)[:m]
            data, idx = data[keep], idx[keep]
        rows.append(np.full(len(idx), r))
        cols.append(idx)
        vals.append(data)
    cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))
    return sp.csr_matrix((cat(vals, np.float32), (cat(rows, np.int64), cat(cols, np.int64))), shape=sim.shape)


def _transitions(train: pd.DataFrame, position: dict[str, int]) -> sp.csr_matrix:
    """Row-normalised counts of (newest history item -> target) over training examples."""
    last = train["history"].map(lambda h: h[-1] if len(h) else None).map(position)
    target = train["target"].map(position)
    ok = last.notna() & target.notna()
    n = len(position)
    counts = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (last[ok].astype(np.int64), target[ok].astype(np.int64))),
                           shape=(n, n))  # duplicates are summed
    return _row_normalised(counts).astype(np.float32)


@dataclass
class BehaviourSignals:
    item_ids: list[str]
    similarity: sp.csr_matrix  # (items, items) item-kNN cosine, top_m per row, zero diagonal
    counts: np.ndarray  # (items,) training interactions (user-item pairs)
    first_seen: np.ndarray  # (items,) first training timestamp, NaN when unknown
    reference_time: float | None = None  # "now" for freshness: the latest training timestamp
    half_life: float = 90 * 86400.0  # seconds
    decay: float = 1.0  # history recency weight: newest 1, then decay, decay^2, ...
    transitions: sp.csr_matrix | None = None  # (items, items) P(next = j | newest = i), top_m per row
    ease_weights: sp.csr_matrix | None = None  # (items, items) EASE B, top_m per row
    rp3: sp.csr_matrix | None = None  # (items, items) RP3beta, top_m per row, rows scaled to max 1

    def __post_init__(self) -> None:
        self.position = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self._log_max = float(np.log1p(self.counts.max())) if len(self.counts) and self.counts.max() > 0 else 1.0

    # ---- fitting ------------------------------------------------------------------------
    @classmethod
    def fit(cls, train: pd.DataFrame, item_ids: Sequence[str], interactions: pd.DataFrame | None = None,
            top_m: int = 200, decay: float = 1.0, half_life_days: float = 90.0,
            ease_lambda: float | None = None, rp3: bool = False) -> "BehaviourSignals":
        """``train``: examples (user_id, history, target); ``interactions`` (item_id, timestamp), when
        there are timestamps, gives each item's first appearance for freshness. RP3beta only with
        ``rp3`` (another items x top_m table to hold)."""
        item_ids = [str(i) for i in item_ids]
        position = {item_id: i for i, item_id in enumerate(item_ids)}
        x = _user_items(train, position)
        co = (x.T @ x).tocsr().astype(np.float32)  # (items, items) co-occurrence
        diag = co.diagonal().astype(np.float32)
        norm = np.sqrt(np.maximum(diag, 1.0))
        inv = sp.diags(1.0 / norm)
        sim = (inv @ co @ inv).tocsr()
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        first = np.full(len(item_ids), np.nan)
        reference = None
        if interactions is not None and "timestamp" in interactions and interactions["timestamp"].notna().any():
            timed = interactions[interactions["timestamp"].notna() & interactions["item_id"].isin(position)]
            earliest = timed.groupby("item_id")["timestamp"].min()
            first[[position[i] for i in earliest.index]] = earliest.to_numpy(dtype=float)
            reference = float(timed["timestamp"].max())
        ease = None
        if ease_lambda is not None and len(item_ids) <= EASE_MAX_ITEMS:
            from coldrec.eval.baselines import EASE

            ease = _top_m(sp.csr_matrix(np.maximum(EASE(train, item_ids).weights(ease_lambda), 0.0)), top_m)
        return cls(item_ids, _top_m(sim, top_m), diag, first, reference, half_life_days * 86400.0, decay,
                   _top_m(_transitions(train, position), top_m), ease, _rp3beta(x, top_m) if rp3 else None)

    # ---- features -----------------------------------------------------------------------
    def columns(self, item_ids: Sequence[str]) -> np.ndarray:
        """Signal row of each id, -1 for ids the signals never saw."""
        return np.array([self.position.get(str(i), -1) for i in item_ids], dtype=np.int64)

    def history_matrix(self, histories: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """(queries, items) recency weights of the known history items, each row summing to 1 (or 0)."""
        indptr, cols, vals = [0], [], []
        for hist in histories:
            weights: dict[int, float] = {}
            for age, item_id in enumerate(reversed(list(hist))):
                col = self.position.get(str(item_id))
                if col is not None and col not in weights:  # a repeated item keeps its newest weight
                    weights[col] = self.decay**age
            total = sum(weights.values())
            for col in sorted(weights):
                cols.append(col)
                vals.append(weights[col] / total)
            indptr.append(len(cols))
        return self._rows_matrix(vals, cols, indptr)

    def _rows_matrix(self, vals: list[float], cols: list[int], indptr: list[int]) -> sp.csr_matrix:
        """(len(indptr) - 1, items) CSR from each row's columns in ascending order (what scipy's COO
        route sorts them to, and the order a sparse product sums them in), built without that route:
        a serving request's rows cost ~4x less this way."""
        index = np.int32 if max(len(self.item_ids), len(cols)) < 2**31 else np.int64
        return sp.csr_matrix((np.asarray(vals, np.float32), np.asarray(cols, index), np.asarray(indptr, index)),
                             shape=(len(indptr) - 1, len(self.item_ids)), copy=False)  # fmt: skip

    def behaviour(self, histories: Sequence[Sequence[str]], candidate_cols: np.ndarray | None = None) -> np.ndarray:
        """(queries, candidates) item-kNN score in [0, 1]; all items when ``candidate_cols`` is None.

        ``candidate_cols``: (candidates,) signal rows (-1 = unknown: 0).
        """
        return self._scores(self.history_matrix(histories), self.similarity, candidate_cols)

    def _scores(self, queries: sp.csr_matrix, weights: sp.csr_matrix | None, candidate_cols) -> np.ndarray:
        """(queries, candidates) of ``queries @ weights`` (zeros when the signal was not fitted)."""
        if weights is None or queries.nnz == 0:  # not fitted, or no history item the signals know
            width = len(self.item_ids) if candidate_cols is None else np.shape(candidate_cols)[-1]
            return np.zeros((queries.shape[0], width), dtype=np.float32)
        if queries.shape[0] == 1 and np.ndim(candidate_cols) == 1:  # a serving request (None: ndim 0)
            return self._one_row(queries, weights, np.asarray(candidate_cols))
        return self._candidate_columns((queries @ weights).tocsr(), candidate_cols)  # sparse: history x top_m

    @staticmethod
    def _one_row(query: sp.csr_matrix, weights: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
        """(1, candidates) of ``query @ weights`` for one (1, items) row: the weighted sum of its items'
        rows of ``weights`` by a bincount over their entries, a quarter of the CPU of the sparse
        product and its dense row (15 against ~55 µs for five history items, top_m 200)."""
        entries, owner = _row_entries(weights, query.indices)
        scale = query.data.astype(np.float32)[owner]
        row = np.bincount(weights.indices[entries], weights=weights.data[entries] * scale, minlength=weights.shape[1])
        return BehaviourSignals._dense_columns(row[None], cols)

    @staticmethod
    def table_rows(table: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Dense (len(rows), len(cols)) float32 of ``table[rows][:, cols]`` (cols -1: 0), for a few rows
        (one request's history items): scattered into dense rows instead of two sparse fancy indexings,
        which build three sparse matrices and cost ~0.2 ms per call."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols)
        entries, owner = _row_entries(table, rows)
        dense = np.zeros((len(rows), table.shape[1]), dtype=np.float32)
        dense[owner, table.indices[entries]] = table.data[entries]
        return BehaviourSignals._dense_columns(dense, cols)

    @staticmethod
    def _candidate_columns(matrix: sp.csr_matrix, candidate_cols) -> np.ndarray:
        """Dense (queries, candidates) of a sparse (queries, items) ``matrix`` (unknown columns: 0)."""
        if candidate_cols is None:
            return matrix.toarray().astype(np.float32)
        # Dense rows, then the candidates' columns: for a serving request (one row) a tenth of the CPU
        # of slicing the sparse matrix by column, which allocates a catalog-sized array as well.
        return BehaviourSignals._dense_columns(matrix.toarray(), np.asarray(candidate_cols))

    @staticmethod
    def _dense_columns(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(queries, candidates) float32 of dense (queries, items) ``rows`` at ``cols`` (-1, unknown: 0)."""
        out = rows[:, np.maximum(cols, 0)].astype(np.float32, copy=False)  # a copy already: fancy indexing
        out[:, cols < 0] = 0.0
        return out

    def of_items(self, weighted: sp.csr_matrix, candidate_cols: np.ndarray | None = None,
                 names: Sequence[str] = ("behaviour", "ease")) -> dict[str, np.ndarray]:
        """{"behaviour": item-kNN, "ease": EASE, "rp3": RP3beta} scores, (queries, candidates), of
        ``weighted`` (queries, items) item weights that stand for a history, as :meth:`behaviour` and
        :meth:`ease` score the rows of :meth:`history_matrix`; only those in ``names`` (zeros for one
        not fitted)."""
        tables = {"behaviour": self.similarity, "ease": self.ease_weights, "rp3": self.rp3}
        return {name: self._scores(weighted, tables[name], candidate_cols) for name in names}

    def ease(self, histories: Sequence[Sequence[str]], candidate_cols: np.ndarray | None = None) -> np.ndarray:
        """(queries, candidates) EASE score of the recency-weighted history (zeros when not fitted)."""
        return self._scores(self.history_matrix(histories), self.ease_weights, candidate_cols)

    def unseen(self, histories: Sequence[Sequence[str]], candidate_cols: np.ndarray | None = None) -> np.ndarray:
        """(queries, candidates) 1 for an item not in the user's history, 0 for one in it (items
        the signals do not know count as unseen). Its weight is how strongly people move on."""
        return self.unseen_of(self.history_matrix(histories), candidate_cols)

    def unseen_of(self, weighted: sp.csr_matrix, candidate_cols: np.ndarray | None = None) -> np.ndarray:
        """:meth:`unseen` of the items of ``weighted`` (queries, items), as :meth:`history_matrix` gives
        them: 0 where a row has weight, else 1."""
        if weighted.shape[0] == 1 and np.ndim(candidate_cols) == 1:  # a serving request: no dense row
            return (1.0 - np.isin(candidate_cols, weighted.indices)[None]).astype(np.float32)
        seen = sp.csr_matrix((np.ones_like(weighted.data), weighted.indices, weighted.indptr), shape=weighted.shape)
        return 1.0 - self._candidate_columns(seen, candidate_cols)

    def newest_matrix(self, histories: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """(queries, items) one-hot of each history's newest item the signals know (a zero row if none)."""
        indptr, cols = [0], []
        for hist in histories:
            col = next((self.position[str(i)] for i in reversed(list(hist)) if str(i) in self.position), None)
            if col is not None:
                cols.append(col)
            indptr.append(len(cols))
        return self._rows_matrix([1.0] * len(cols), cols, indptr)

    def sequence(self, histories: Sequence[Sequence[str]], candidate_cols: np.ndarray | None = None) -> np.ndarray:
        """(queries, candidates) P(candidate follows the newest history item), as :meth:`behaviour`."""
        return self._scores(self.newest_matrix(histories), self.transitions, candidate_cols)

    def popularity(self, cols: np.ndarray | None = None) -> np.ndarray:
        """(items,) or (len(cols),) log-scaled popularity in [0, 1]; 0 for unknown items."""
        pop = (np.log1p(self.counts) / self._log_max).astype(np.float32)
        if cols is None:
            return pop
        cols = np.asarray(cols)
        return np.where(cols >= 0, pop[np.maximum(cols, 0)], 0.0).astype(np.float32)

    def freshness(self, cols: np.ndarray | None = None) -> np.ndarray:
        """(items,) or (len(cols),) in (0, 1]; 1 for items with no known first interaction."""
        if self.reference_time is None:  # no timestamps: only "never interacted with" is new
            fresh = (self.counts == 0).astype(np.float32)
        else:
            age = np.maximum(self.reference_time - self.first_seen, 0.0)
            fresh = np.where(np.isnan(age), 1.0, np.exp2(-age / self.half_life)).astype(np.float32)
        if cols is None:
            return fresh
        cols = np.asarray(cols)
        return np.where(cols >= 0, fresh[np.maximum(cols, 0)], 1.0).astype(np.float32)

    # ---- persistence --------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        sim = self.similarity.tocsr()
        np.savez_compressed(
            path / SIGNALS_FILE, item_ids=np.asarray(self.item_ids, dtype=object).astype(str),
            sim_data=sim.data, sim_indices=sim.indices, sim_indptr=sim.indptr, counts=self.counts,
            first_seen=self.first_seen, reference_time=np.nan if self.reference_time is None else self.reference_time,
            half_life=self.half_life, decay=self.decay, **_csr_arrays("tr", self.transitions),
            **_csr_arrays("ease", self.ease_weights), **_csr_arrays("rp3", self.rp3),
        )
        return path / SIGNALS_FILE

    @classmethod
    def load(cls, folder: str | Path) -> "BehaviourSignals":
        with np.load(Path(folder) / SIGNALS_FILE) as z:
            n = len(z["item_ids"])
            sim = sp.csr_matrix((z["sim_data"], z["sim_indices"], z["sim_indptr"]), shape=(n, n))
            ref = float(z["reference_time"])
            transitions = (sp.csr_matrix((z["tr_data"], z["tr_indices"], z["tr_indptr"]), shape=(n, n))
                           if "tr_data" in z else None)
            ease, rp3 = ((sp.csr_matrix((z[f"{p}_data"], z[f"{p}_indices"], z[f"{p}_indptr"]), shape=(n, n))
                          if f"{p}_data" in z else None) for p in ("ease", "rp3"))  # older files lack rp3
            return cls([str(i) for i in z["item_ids"]], sim, z["counts"], z["first_seen"],
                       None if np.isnan(ref) else ref, float(z["half_life"]), float(z["decay"]), transitions, ease, rp3)


def _row_entries(table: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in ``table.indices``/``data`` of the entries of ``rows``, the index in ``rows`` of
    each entry's row)."""
    starts, ends = table.indptr[rows], table.indptr[np.asarray(rows) + 1]
    lengths = ends - starts
    owner = np.repeat(np.arange(len(lengths)), lengths)
    return np.arange(len(owner)) + (starts - np.cumsum(lengths) + lengths)[owner], owner  # row start + offset in row


def _csr_arrays(prefix: str, matrix: sp.csr_matrix | None) -> dict[str, np.ndarray]:
    if matrix is None:
        return {}
    matrix = matrix.tocsr()
    return {f"{prefix}_data": matrix.data, f"{prefix}_indices": matrix.indices, f"{prefix}_indptr": matrix.indptr}
