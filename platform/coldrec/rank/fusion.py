"""relevance = content + sum of w_f * feature_f, and how to learn the w.

Features (:class:`coldrec.rank.signals.BehaviourSignals`): ``behaviour`` (item-kNN), ``ease``
(EASE weights, when fitted), ``rp3`` (RP3beta's random walk, with ``eval.fused_rp3``), ``sequence`` (transitions from the newest item), ``unseen`` (not
in the user's history: how rarely people re-buy), and three content features made from the item
vectors (:func:`content_features`): ``newest`` (cosine with the user's newest history item:
recency, which the profile text mixes with older items), ``history_mean`` (the recency-weighted
mean cosine with every history item: the profile text holds only the newest two or three items)
and ``history_max`` (the best cosine with one of the newest few items); then ``popularity`` and
``freshness``. With the catalog's TF-IDF rows (:mod:`coldrec.rank.lexical`), the same three
history features over word overlap instead of the profile model's vectors: ``lexical_newest``,
``lexical_mean`` and ``lexical_max`` (a brand or model number shared with a history item). With a
fitted SASRec (:mod:`coldrec.rank.sequential`), ``sasrec``: its probability of each item coming
next, relative to the most likely item's. With ``eval.fused_feedback``, ``feedback``: the item-kNN of
the profile model's ten best matches outside the history (pseudo-relevance feedback,
:mod:`coldrec.rank.feedback`). A request that is free text alone has none of the
history features; it gets weights of its own (``query_words``, the text's word overlap with the
item, and the item priors), learned on free-text queries by :mod:`coldrec.rank.free_text`.
``content`` is the profile model's cosine score; its weight is fixed at 1 (only ratios matter for a ranking). The weights
are learned by coordinate ascent on NDCG@10 over *validation* examples (never test), scoring the
whole catalog; the Serve reranker and the ``fused`` evaluation method apply the same function,
so what is measured is what is served.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from coldrec.rank.feedback import FEEDBACK, Feedback, history_feedback
from coldrec.rank.lexical import LEXICAL_FEATURES, LexicalVectors, lexical_features
from coldrec.rank.signals import BehaviourSignals

if TYPE_CHECKING:
    from coldrec.rank.sequential import SequentialSignal

WEIGHTS_FILE = "weights.json"
SEQUENTIAL_FILE = "sasrec.pt"  # coldrec.rank.sequential's; named here so loading without it needs no torch
CONTENT_FEATURES = ("newest", "history_mean", "history_max")  # cosines with the history's item vectors
HISTORY_MAX_ITEMS = 5  # history_max looks at this many of the newest history items
# What BehaviourSignals gives the fusion (coldrec.rank.fusion.signal_features), in this order.
SIGNAL_FEATURES = ("behaviour", "ease", "rp3", "sequence", "unseen", "popularity", "freshness")
log = logging.getLogger(__name__)


class FusionWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    behaviour: float = Field(0.0, ge=0)
    ease: float = Field(0.0, ge=0)
    rp3: float = Field(0.0, ge=0)
    feedback: float = Field(0.0, ge=0)
    sequence: float = Field(0.0, ge=0)
    sasrec: float = Field(0.0, ge=0)
    unseen: float = Field(0.0, ge=0)
    newest: float = Field(0.0, ge=0)
    history_mean: float = Field(0.0, ge=0)
    history_max: float = Field(0.0, ge=0)
    lexical_newest: float = Field(0.0, ge=0)
    lexical_mean: float = Field(0.0, ge=0)
    lexical_max: float = Field(0.0, ge=0)
    query_words: float = Field(0.0, ge=0)
    popularity: float = Field(0.0, ge=0)
    freshness: float = Field(0.0, ge=0)

    @property
    def uses_lexical(self) -> bool:
        """Whether any word-overlap feature has weight (then the TF-IDF vocabulary is needed)."""
        return any(getattr(self, name) for name in (*LEXICAL_FEATURES, "query_words"))

    @property
    def nonzero(self) -> dict[str, float]:
        """The weights that count, by name."""
        return {name: value for name, value in self.model_dump().items() if value}

    @property
    def uses_history_feedback(self) -> bool:
        """Whether the history users' pseudo-relevance feedback has weight (:func:`coldrec.rank.feedback.history_feedback`)."""
        return bool(self.feedback)

    @property
    def uses_sequential(self) -> bool:
        """Whether the SASRec feature has weight (then the fitted sequence model is needed)."""
        return bool(self.sasrec)


class FusionGrid(BaseModel):
    """Values tried per weight. Content scores are cosines, mostly 0.2-0.8; behaviour is a mean
    similarity, often 0.01-0.1, so its useful weights are large."""

    model_config = ConfigDict(extra="forbid")

    behaviour: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6])
    ease: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2])
    rp3: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4])
    feedback: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6])
    sequence: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    sasrec: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    unseen: list[float] = Field(default_factory=lambda: [0.0, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    newest: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
    history_mean: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    history_max: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    lexical_newest: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    lexical_mean: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    lexical_max: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    query_words: list[float] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    popularity: list[float] = Field(default_factory=lambda: [0.0, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8])
    freshness: list[float] = Field(default_factory=lambda: [0.0, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
    rounds: int = Field(4, ge=1, description="coordinate-ascent sweeps over the weights")
    refine_factors: list[float] = Field(default_factory=lambda: [0.5, 0.71, 1.41, 2.0])
    refine_rounds: int = Field(4, ge=0, description="sweeps multiplying each non-zero weight by refine_factors")


def fused_scores(content: np.ndarray, features: dict[str, np.ndarray], weights: FusionWeights) -> np.ndarray:
    """(queries, items) relevance; ``features`` by name, pair features (queries, items), item
    features (items,) broadcast. A missing feature counts as zero."""
    out = np.array(content, dtype=np.float32, copy=True)
    for name, value in features.items():
        w = getattr(weights, name)
        if w:
            out += w * value
    return out


def _ndcg_at_10(scores: np.ndarray, targets: np.ndarray, tie_order: np.ndarray) -> float:
    from coldrec.eval.metrics import rank_metrics, target_ranks

    return rank_metrics(target_ranks(scores, targets, tie_order), [10])["ndcg@10"]


def learn_weights(content: np.ndarray, features: dict[str, np.ndarray], targets: np.ndarray,
                  grid: FusionGrid | None = None, seed: int = 0,
                  start: FusionWeights | None = None) -> tuple[FusionWeights, dict]:
    """Weights with the best NDCG@10 of ``targets`` (queries,) catalog columns, by coordinate ascent.

    content: (queries, items); features as in :func:`fused_scores`. Starting from content alone
    (or from ``start``, whose validation NDCG the result then never falls below),
    each sweep sets every weight in turn to its best grid value given the others, until a sweep
    changes nothing; then sweeps that scale each non-zero weight by ``refine_factors`` refine it
    between grid points (and past the end of a grid) the same way. A constant feature shifts every
    score alike, so its weight stays 0. Returns (weights, report): validation NDCG of the chosen
    weights and of content alone.
    """
    grid = grid or FusionGrid()
    names = [n for n in FusionWeights.model_fields if n in features and np.ptp(features[n]) > 0]
    tie_order = np.random.default_rng(seed).permutation(content.shape[1])
    seen: dict[tuple, float] = {}

    def value(w: FusionWeights) -> float:
        key = tuple(w.model_dump().values())
        if key not in seen:
            seen[key] = _ndcg_at_10(fused_scores(content, features, w), targets, tie_order)
        return seen[key]

    best = start or FusionWeights()
    best_value = value(best)

    def sweep(candidates) -> None:
        nonlocal best, best_value
        for name in names:
            for v in candidates(name, getattr(best, name)):
                trial = best.model_copy(update={name: v})
                if value(trial) > best_value:  # strictly better: ties keep the smaller, earlier weights
                    best, best_value = trial, value(trial)

    for _ in range(grid.rounds):
        before = best
        sweep(lambda name, _: getattr(grid, name))
        if best == before:
            break
    for _ in range(grid.refine_rounds):  # between grid points, and past a grid's last value
        before = best
        sweep(lambda _, w: [round(w * f, 6) for f in grid.refine_factors] if w else [])
        if best == before:
            break
    report = {"on": "validation ndcg@10", "queries": int(len(targets)), "ndcg@10": round(best_value, 6),
              "content_only_ndcg@10": round(value(FusionWeights()), 6), "points_tried": len(seen)}
    return best, report


def softmax_weights(content: np.ndarray, features: dict[str, np.ndarray], targets: np.ndarray,
                    max_iter: int = 200, l2: float = 0.0) -> FusionWeights | None:
    """The linear score's weights that minimise the full-catalog softmax cross-entropy of ``targets``
    (convex, so L-BFGS finds its one optimum), as ratios to content's weight, negative ones set to 0.
    None when content's own weight does not come out positive (or a feature that separates the
    targets drives the weights past any finite value; ``l2`` > 0 keeps them finite). A start for
    :func:`learn_weights`: the greedy search from content alone can stop at a worse optimum when
    there are many features.
    """
    import torch  # only the weight search needs it

    names = [n for n in FusionWeights.model_fields if n in features and np.ptp(features[n]) > 0]
    stack = np.stack([content, *(np.broadcast_to(features[n], content.shape) for n in names)], axis=-1)
    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))
    y = torch.from_numpy(np.array(targets, dtype=np.int64))  # a copy: pandas hands out read-only arrays
    w = torch.zeros(len(names) + 1)
    w[0] = 20.0  # content at a contrastive model's usual inverse temperature
    w.requires_grad_(True)
    optimizer = torch.optim.LBFGS([w], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = w.detach().numpy().astype(np.float64)
    if not np.isfinite(fitted).all() or fitted[0] <= 0:
        return None
    return FusionWeights(**{n: round(max(float(v / fitted[0]), 0.0), 6) for n, v in zip(names, fitted[1:])})


def search_from_softmax(content: np.ndarray, features: dict[str, np.ndarray], targets: np.ndarray,
                        weights: FusionWeights, report: dict, grid: FusionGrid | None = None,
                        seed: int = 0) -> tuple[FusionWeights, dict]:
    """:func:`learn_weights` again from :func:`softmax_weights`; the better of that and (``weights``,
    ``report``), a search already made on the same data, with both scores in ``report["searches"]``.
    Unchanged when the softmax fit gives no start."""
    start = softmax_weights(content, features, targets)
    if start is None:
        return weights, report
    other, other_report = learn_weights(content, features, targets, grid, seed, start=start)
    searches = {"from content": report["ndcg@10"], "from softmax fit": other_report["ndcg@10"]}
    tried = report["points_tried"] + other_report["points_tried"]
    if other_report["ndcg@10"] > report["ndcg@10"]:
        weights, report = other, other_report
    return weights, {**report, "searches": searches, "points_tried": tried}


def signal_features(signals: BehaviourSignals, histories: Sequence[Sequence[str]], cols: np.ndarray,
                    names: Collection[str] = SIGNAL_FEATURES, weighted: sp.csr_matrix | None = None) -> dict:
    """The features of ``signals`` in ``names`` (:data:`SIGNAL_FEATURES`; ``rp3`` only when the signals
    were fitted with it) for histories (oldest first) x catalog columns ``cols``. ``weighted``: the
    histories' :meth:`~coldrec.rank.signals.BehaviourSignals.history_matrix` when the caller has it;
    one history matrix serves item-kNN, EASE, RP3beta and unseen."""
    unknown = set(names) - set(SIGNAL_FEATURES)
    if unknown:
        raise ValueError(f"unknown signal features {sorted(unknown)}; known: {SIGNAL_FEATURES}")
    names = [n for n in SIGNAL_FEATURES if n in names and (n != "rp3" or signals.rp3 is not None)]
    tables = [n for n in names if n in ("behaviour", "ease", "rp3")]
    features: dict[str, np.ndarray] = {}
    if tables or "unseen" in names:
        weighted = signals.history_matrix(histories) if weighted is None else weighted
        features.update(signals.of_items(weighted, cols, tables))
        if "unseen" in names:
            features["unseen"] = signals.unseen_of(weighted, cols)
    for name, compute in (("sequence", lambda: signals.sequence(histories, cols)),
                          ("popularity", lambda: signals.popularity(cols)),
                          ("freshness", lambda: signals.freshness(cols))):  # fmt: skip
        if name in names:
            features[name] = compute()
    return {name: features[name] for name in names}


def signal_names(rp3: bool = True) -> tuple[str, ...]:
    """:data:`SIGNAL_FEATURES`, without ``rp3`` unless ``rp3``."""
    return tuple(n for n in SIGNAL_FEATURES if rp3 or n != "rp3")


def weighted_signals(weights: FusionWeights) -> tuple[str, ...]:
    """The :data:`SIGNAL_FEATURES` that ``weights`` give weight: all that scoring with them needs."""
    return tuple(n for n in SIGNAL_FEATURES if getattr(weights, n))


def history_columns(histories: Sequence[Sequence[str]], position: dict[str, int]) -> list[list[int]]:
    """Per history (oldest first), the catalog columns of its items, newest first, each once."""
    return [list(dict.fromkeys(position[str(i)] for i in reversed(list(hist)) if str(i) in position))
            for hist in histories]


def history_vectors(histories: Sequence[Sequence[str]], item_vectors: np.ndarray,
                    position: dict[str, int]) -> list[np.ndarray]:
    """Per history (oldest first), the (h, dim) vectors of its catalog items, newest first, each once."""
    return [item_vectors[cols] for cols in history_columns(histories, position)]


def content_features(histories: Sequence[np.ndarray], candidates: np.ndarray, decay: float) -> dict[str, np.ndarray]:
    """The content features, each (queries, candidates), zero for a query with no history.

    ``histories[q]``: (h_q, dim) vectors of query q's history items, newest first, each once;
    ``candidates``: (candidates, dim). ``newest`` is the cosine with the newest item; ``history_mean``
    the mean cosine with all of them, weighted 1, decay, decay^2, ... from the newest (the cosine
    with their weighted mean vector); ``history_max`` the best cosine with one of the newest
    HISTORY_MAX_ITEMS.
    """
    candidates = np.asarray(candidates, dtype=np.float32)
    queries, dim = len(histories), candidates.shape[1]
    newest = np.zeros((queries, dim), dtype=np.float32)
    mean = np.zeros((queries, dim), dtype=np.float32)
    recent = np.zeros((queries, HISTORY_MAX_ITEMS, dim), dtype=np.float32)  # zero-padded
    count = np.zeros(queries, dtype=np.int64)
    for q, vectors in enumerate(histories):
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
        if not len(vectors):
            continue
        weights = decay ** np.arange(len(vectors), dtype=np.float32)
        newest[q], mean[q] = vectors[0], weights @ vectors / weights.sum()
        count[q] = min(len(vectors), HISTORY_MAX_ITEMS)
        recent[q, : count[q]] = vectors[: count[q]]
    best = np.zeros((queries, len(candidates)), dtype=np.float32)
    for lo in range(0, queries, 512):  # (512, HISTORY_MAX_ITEMS, candidates) at a time
        sims = np.einsum("qhd,nd->qhn", recent[lo : lo + 512], candidates)
        sims[np.arange(HISTORY_MAX_ITEMS)[None, :] >= count[lo : lo + 512, None]] = -np.inf  # padding never wins
        best[lo : lo + 512] = np.where(count[lo : lo + 512, None] > 0, sims.max(axis=1), 0.0)
    return {"newest": newest @ candidates.T, "history_mean": mean @ candidates.T, "history_max": best}


def catalog_feedback(signals: BehaviourSignals, cols: np.ndarray, content: np.ndarray,
                     histories: Sequence[Sequence[str]], position: dict[str, int],
                     feedback: Feedback = FEEDBACK) -> np.ndarray:
    """(queries, items) the ``feedback`` feature of histories (oldest first) over the whole catalog,
    ``content`` (queries, items) their cosines, ``cols`` the catalog's signal rows."""
    return history_feedback(signals, cols, content, history_columns(histories, position), feedback)[0]


def catalog_lexical_features(histories: Sequence[Sequence[str]], lexical_rows: sp.csr_matrix,
                             position: dict[str, int], decay: float) -> dict[str, np.ndarray]:
    """:func:`coldrec.rank.lexical.lexical_features` of histories (oldest first) x the whole catalog;
    ``lexical_rows``: (items, vocabulary) TF-IDF rows in catalog order."""
    columns = history_columns(histories, position)
    return lexical_features([lexical_rows[cols] for cols in columns], lexical_rows, decay, HISTORY_MAX_ITEMS,
                            own=[np.asarray(cols, dtype=np.int64) for cols in columns])


def tuning_queries(encoder, item_vectors: np.ndarray, position: dict[str, int], queries: pd.DataFrame,
                   max_users: int | None, seed: int, batch_size: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The rows weights are learned on: those whose ``target`` is in the catalog, at most ``max_users``
    of them (sampled with ``seed``); with their content scores (queries, items), the cosines of their
    ``profile_text`` with ``item_vectors``, and (queries,) target columns."""
    queries = queries[queries["target"].isin(position)]
    if max_users and len(queries) > max_users:
        queries = queries.sample(n=max_users, random_state=seed)
    users = encoder.encode_users(queries["profile_text"].tolist(), batch_size=batch_size)  # (queries, dim)
    return queries, users @ item_vectors.T, queries["target"].map(position).to_numpy()


def fit_fusion(signals: BehaviourSignals, encoder, item_vectors: np.ndarray, item_ids: Sequence[str],
               valid: pd.DataFrame, decays: Sequence[float] = (1.0,), grid: FusionGrid | None = None,
               batch_size: int = 64, max_users: int | None = 2000, seed: int = 0,
               lexical_rows: sp.csr_matrix | None = None, sequential: SequentialSignal | None = None,
               softmax_start: bool = True, feedback: bool = False, rp3: bool = False) -> tuple[FusionWeights, dict]:
    """Learn the weights (and the signals' history decay) on validation examples.

    ``valid``: rows with history, profile_text and target (a catalog item id); ``item_vectors``
    (items, dim) are the item tower's vectors in ``item_ids`` order, and ``lexical_rows``, when
    given, the items' TF-IDF rows (:class:`coldrec.rank.lexical.LexicalVectors`) in that order;
    without them the lexical weights stay 0; likewise the ``sasrec`` weight without ``sequential``,
    a SASRec fitted on the same training examples as ``signals``; the ``feedback`` weight only with
    ``feedback`` (:func:`coldrec.rank.feedback.history_feedback`), the ``rp3`` weight only with ``rp3``
    (RP3beta, :class:`coldrec.rank.signals.BehaviourSignals`). Per decay, coordinate ascent
    runs from content alone (the vector features, then the word ones from there) and, with
    ``softmax_start``, again from :func:`softmax_weights`; the better on validation wins. Sets
    ``signals.decay`` to the chosen decay. Returns (weights, report).
    """
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    valid, content, targets = tuning_queries(encoder, item_vectors, position, valid, max_users, seed, batch_size)
    cols = signals.columns(item_ids)
    histories = valid["history"].tolist()
    vectors = history_vectors(histories, item_vectors, position)
    ordered = {} if sequential is None else {"sasrec": sequential.scores(histories, sequential.columns(item_ids))}
    if feedback:  # the content's best matches outside the history: the same at every decay
        ordered["feedback"] = catalog_feedback(signals, cols, content, histories, position)
    best: tuple[float, float, FusionWeights, dict] | None = None
    for decay in decays:  # one recency decay for the behaviour signals and history_mean
        signals.decay = decay
        features = {**signal_features(signals, histories, cols, signal_names(rp3)),
                    **content_features(vectors, item_vectors, decay),
                    **ordered}
        weights, report = learn_weights(content, features, targets, grid, seed)
        if lexical_rows is not None:  # then the word-overlap weights too, starting from that optimum
            # Coordinate ascent is greedy: from content alone, the extra features can lead it to a
            # worse optimum than without them. Started from the optimum without them, they only add.
            features.update(catalog_lexical_features(histories, lexical_rows, position, decay))
            tried = report["points_tried"]
            weights, report = learn_weights(content, features, targets, grid, seed, start=weights)
            report["points_tried"] += tried
        if softmax_start:  # a second search, from the convex softmax fit of every feature; the better one wins
            weights, report = search_from_softmax(content, features, targets, weights, report, grid, seed)
        if best is None or report["ndcg@10"] > best[0]:
            best = (report["ndcg@10"], decay, weights, report)
    _, decay, weights, report = best
    signals.decay = decay
    log.info("fusion weights %s, history decay %s: validation %s", weights.model_dump(), decay, report)
    # The feedback's settings, as the Reranker must choose its best matches (by content alone: no words)
    extra = {"feedback": {"items": FEEDBACK.items, "temperature": FEEDBACK.temperature}} if feedback else {}
    return weights, {**report, "decay": decay, **extra}


class SavedReranker(NamedTuple):
    """What :func:`load_reranker` reads back."""

    signals: BehaviourSignals
    weights: FusionWeights
    lexical: LexicalVectors | None  # the TF-IDF vocabulary, when the word features were fitted
    sequential: SequentialSignal | None  # the SASRec, when it was fitted
    text_weights: FusionWeights | None = None  # for free text alone (coldrec.rank.free_text), when fitted
    text_feedback: dict | None = None  # the settings text_weights' feedback was learned with (coldrec.rank.feedback.Feedback)
    feedback: dict | None = None  # the settings weights' feedback (history users) was learned with


def save_reranker(folder: str | Path, signals: BehaviourSignals, weights: FusionWeights, report: dict,
                  lexical: LexicalVectors | None = None, sequential: SequentialSignal | None = None,
                  text_weights: FusionWeights | None = None, text_report: dict | None = None) -> Path:
    """``folder/{signals.npz, weights.json[, lexical.npz][, sasrec.pt]}``: what the Serve Reranker
    loads (``AppArgs.reranker_dir``). ``text_weights`` (with ``text_report``) are saved beside the
    weights, for requests that are free text alone."""
    path = Path(folder)
    signals.save(path)
    if lexical is not None:
        lexical.save(path)
    if sequential is not None:
        sequential.save(path)
    saved = {"weights": weights.model_dump(), "report": report}
    if text_weights is not None:
        saved.update(text_weights=text_weights.model_dump(), text_report=text_report or {})
    (path / WEIGHTS_FILE).write_text(json.dumps(saved, indent=2) + "\n")
    return path


def load_reranker(folder: str | Path) -> SavedReranker:
    """What :func:`save_reranker` wrote; the parts that were not fitted are None."""
    path = Path(folder)
    if not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no {WEIGHTS_FILE}: run `coldrec rerank` first")
    saved = json.loads((path / WEIGHTS_FILE).read_text())
    weights = FusionWeights.model_validate(saved["weights"])
    text_weights = None if saved.get("text_weights") is None else FusionWeights.model_validate(saved["text_weights"])
    lexical = LexicalVectors.load_if_present(path)
    if lexical is None and (weights.uses_lexical or (text_weights is not None and text_weights.uses_lexical)):
        raise FileNotFoundError(f"{path}: the weights use lexical features but there is no lexical.npz")
    sequential = None
    if (path / SEQUENTIAL_FILE).is_file():
        from coldrec.rank.sequential import SequentialSignal  # imports torch

        sequential = SequentialSignal.load(path)
    if sequential is None and weights.uses_sequential:
        raise FileNotFoundError(f"{path}: the weights use the sasrec feature but there is no sasrec.pt")
    text_feedback = (saved.get("text_report") or {}).get("feedback")
    feedback = (saved.get("report") or {}).get("feedback")
    return SavedReranker(BehaviourSignals.load(path), weights, lexical, sequential, text_weights, text_feedback, feedback)
