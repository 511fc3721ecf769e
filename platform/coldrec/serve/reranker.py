"""Reranker: orders the retriever's candidates into the final top k.

``rerank(candidates, k, exclude, context) -> items``, where a candidate is
{item_id, title, text, score, vector} (score: the profile model's cosine) and a returned item is
{item_id, title, score, reason}. ``context`` = {"history": [{item_id, title, text, vector}] newest first,
"words": [query words], "text": the request's free text or None} is what behaviour scores and
reasons are made from.

relevance = content + w_b * item-kNN behaviour + w_e * EASE + w_r * RP3beta + w_s * transitions from the newest item
+ w_q * SASRec's next-item probability (:mod:`coldrec.rank.sequential`, when fitted) + w_u * unseen
+ w_k * item-kNN of the best candidates outside the history (pseudo-relevance feedback, :mod:`coldrec.rank.feedback`)
+ the cosines with the history's items (newest, recency-weighted mean, best of the newest five), the same three over the items' words (TF-IDF rows of the candidate's and the history items'
texts, :mod:`coldrec.rank.lexical`: a new item has them from its text alone) + w_p * popularity +
w_f * freshness (:mod:`coldrec.rank.fusion`), with the signals, vocabulary and weights
that ``coldrec rerank`` learned on the validation split for this index version
(``<index version>/rerank/``); without them, relevance is the content score. A request with no
history (free text alone) has weights of its own, learned on free-text queries
(:mod:`coldrec.rank.free_text`): content + w_w * the text's word overlap with the item + w_b * item-kNN
+ w_e * EASE of the best matches among the candidates (pseudo-relevance feedback) + w_p * popularity +
w_f * freshness; a reranker fitted before those existed ranks it by content alone.
Then MMR trades relevance for diversity. Items added
through the API since the fit are unknown to the signals: no behaviour, no popularity,
freshness 1 (brand new).

The Ingress coalesces concurrent /recommend requests into one ``rerank_many(candidate_lists,
params)`` call, each request's params being ``rerank``'s {k, exclude, context}.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from ray import serve

from coldrec.rank.fusion import (
    CONTENT_FEATURES, HISTORY_MAX_ITEMS, FusionWeights, content_features, fused_scores, load_reranker, signal_features,
    weighted_signals,
)  # fmt: skip
from coldrec.rank.feedback import FEEDBACK, Feedback, history_feedback, pseudo_history
from coldrec.rank.free_text import feedback_features, text_features, uses_feedback
from coldrec.rank.lexical import LexicalVectors, RowCache, history_overlap_features
from coldrec.rank.signals import BehaviourSignals
from coldrec.serve.profile import informative_words

if TYPE_CHECKING:  # torch is imported only by a reranker that loads a fitted SASRec
    from coldrec.rank.sequential import SequentialSignal


def mmr_rerank(candidates: list[dict[str, Any]], k: int, diversity: float = 0.0) -> list[dict[str, Any]]:
    """Maximal marginal relevance: pick, one at a time, the candidate maximising
    ``(1 - diversity) * score - diversity * max cosine to the items already picked``.

    ``diversity = 0`` is a stable sort by score (ties broken by item_id, so answers are
    reproducible); small values (0.1-0.3) keep near-duplicates (same product, other size)
    from filling the list.
    """
    ranked = sorted(candidates, key=lambda c: (-c["score"], c["item_id"]))
    if diversity <= 0 or len(ranked) <= 1:
        return ranked[:k]
    vectors = np.stack([np.asarray(c["vector"], dtype=np.float32) for c in ranked])  # (n, dim)
    scores = np.array([c["score"] for c in ranked], dtype=np.float32)  # (n,)
    picked: list[int] = []
    max_sim = np.full(len(ranked), -np.inf, dtype=np.float32)  # similarity to the picked set
    left = np.ones(len(ranked), dtype=bool)
    while len(picked) < min(k, len(ranked)):
        redundancy = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = np.where(left, (1 - diversity) * scores - diversity * redundancy, -np.inf)
        best = int(np.argmax(value))  # argmax takes the first of ties: the higher-scored one
        picked.append(best)
        left[best] = False
        max_sim = np.maximum(max_sim, vectors @ vectors[best])
    return [ranked[i] for i in picked]


@lru_cache(maxsize=16384)
def _words_of(text: str) -> frozenset[str]:
    """An item's informative words, kept per text: the catalog's items recur in answers, and reading
    their words took a tenth of the Reranker's CPU on free-text requests. Keyed by the text itself, so
    an item whose text changed (PUT /items) is read again."""
    return frozenset(informative_words(text))


def explain(candidate: dict[str, Any], history: list[dict[str, Any]], words: list[str],
            behaviour_source: dict[str, Any] | None = None) -> str:
    """A short reason: the query words the item's text contains, else the history item that others
    bought with it (when behaviour carried the item), else the profile item most like it."""
    if words:
        own = _words_of(f"{candidate.get('title', '')} {candidate.get('text', '')}")
        matched = [w for w in dict.fromkeys(words) if w in own][:3]
        if matched:
            return "matches " + ", ".join(f"'{w}'" for w in matched)
    if behaviour_source is not None:
        return f"often chosen with '{behaviour_source['title'] or behaviour_source['item_id']}'"
    if history and candidate.get("vector") is not None:
        vector = np.asarray(candidate["vector"], dtype=np.float32)
        sims = [float(np.dot(vector, np.asarray(h["vector"], dtype=np.float32))) for h in history]
        best = history[int(np.argmax(sims))]
        return f"like '{best['title'] or best['item_id']}'"
    return "close to your description" if words else "close to your profile"


def candidate_content(candidates: list[dict[str, Any]], history: list[dict[str, Any]],
                      decay: float) -> dict[str, np.ndarray]:
    """:func:`coldrec.rank.fusion.content_features` of the candidates, (1, candidates) each, from
    the history's vectors (``history`` newest first); a candidate or history item without a vector
    adds nothing."""
    past = [h["vector"] for h in history if h.get("vector") is not None]
    if not past:  # free text alone: nothing to compare with
        zeros = np.zeros((1, len(candidates)), dtype=np.float32)
        return dict.fromkeys(CONTENT_FEATURES, zeros)
    missing = np.zeros(len(past[0]), dtype=np.float32)  # a candidate without a vector: cosine 0
    vectors = [missing if c.get("vector") is None else c["vector"] for c in candidates]
    block = np.concatenate(vectors).reshape(len(vectors), -1).astype(np.float32)  # (candidates, dim)
    return content_features([np.asarray(past, dtype=np.float32)], block, decay)


def candidate_lexical(candidates: list[dict[str, Any]], history: list[dict[str, Any]],
                      lexical: LexicalVectors | RowCache, decay: float) -> dict[str, np.ndarray]:
    """:func:`coldrec.rank.lexical.lexical_features` of the candidates, (1, candidates) each, from the
    TF-IDF rows of their texts and the history items' (``history`` newest first, each once)."""
    def text(item: dict[str, Any]) -> str:
        return item.get("text") or item.get("title") or ""

    where = {c["item_id"]: j for j, c in enumerate(candidates)}
    own = np.array([where.get(h["item_id"], -1) for h in history], dtype=np.int64)  # a history item among them
    rows = lexical if isinstance(lexical, RowCache) else RowCache(lexical)  # overlaps with no sparse matrix built
    block = rows.overlaps([text(h) for h in history], [text(c) for c in candidates])
    return history_overlap_features(block, decay, HISTORY_MAX_ITEMS, own)


def behaviour_sources(history: list[dict[str, Any]], weighted: sp.csr_matrix, cols: np.ndarray,
                      features: dict[str, np.ndarray], signals: BehaviourSignals, weights: FusionWeights,
                      candidates: list[dict[str, Any]] | None = None, pseudo: sp.csr_matrix | None = None,
                      ) -> list[dict[str, Any] | None]:  # fmt: skip
    """Per candidate, the history item (newest first) that gave it most of its item-kNN, transition or
    SASRec score, None when those add nothing. ``cols``: (candidates,) signal rows; ``features``: fuse's.
    With the feedback's ``pseudo``-history, a candidate that the feedback lifted more than the history
    did gets the best match among ``candidates`` that carried it. ``weighted``: the history's (1, items)
    :meth:`~coldrec.rank.signals.BehaviourSignals.history_matrix`."""
    zeros = np.zeros(len(cols), dtype=np.float32)  # a feature fuse did not compute has weight 0
    behaviour = features["behaviour"][0] if "behaviour" in features else zeros  # (candidates,)
    sequence = weights.sequence * features["sequence"][0] if "sequence" in features else zeros  # after the newest
    if "sasrec" in features:
        sequence = sequence + weights.sasrec * features["sasrec"][0]
    sources: list[dict[str, Any] | None] = [None] * len(cols)
    by_sequence = (sequence > weights.behaviour * behaviour) & (sequence > 0)
    if by_sequence.any():
        newest = next((h for h in history if h["item_id"] in signals.position), None)  # the transitions' source
        for i in np.flatnonzero(by_sequence):
            sources[i] = newest
    by_behaviour = np.flatnonzero(~by_sequence & (behaviour > 0)) if weights.behaviour > 0 else []
    if len(by_behaviour):
        credit(sources, by_behaviour, signals, weighted, cols, history)
    if pseudo is not None and candidates is not None and pseudo.nnz:
        lifted = weights.feedback * features["feedback"][0]
        by_feedback = np.flatnonzero((lifted > weights.behaviour * behaviour) & (lifted > sequence) & (lifted > 0))
        credit(sources, by_feedback, signals, pseudo, cols, candidates)
    return sources


def main_neighbour(signals: BehaviourSignals, weighted: sp.csr_matrix, cols: np.ndarray) -> list[str]:
    """Per candidate (signal rows ``cols``), the item of ``weighted`` (1, items) that gave it most of
    its item-kNN score: each item's weight x its similarity to the candidate."""
    similarity = signals.table_rows(signals.similarity, weighted.indices, cols)  # (weighted items, candidates)
    contrib = weighted.data[:, None] * similarity
    return [signals.item_ids[weighted.indices[row]] for row in np.argmax(contrib, axis=0)]


def credit(sources: list[dict[str, Any] | None], at: np.ndarray, signals: BehaviourSignals, weighted: sp.csr_matrix,
           cols: np.ndarray, items: list[dict[str, Any]]) -> None:
    """Sets ``sources[i]``, for each candidate position i in ``at``, to the one of ``items`` (the
    items of ``weighted``, each with an item_id) that gave it most of its item-kNN score
    (:func:`main_neighbour`); ``cols``: every candidate's signal row."""
    if len(at):
        by_id = {item["item_id"]: item for item in items}
        for i, item_id in zip(at, main_neighbour(signals, weighted, cols[at])):
            sources[i] = by_id[item_id]


def fuse_text(candidates: list[dict[str, Any]], query_row: sp.csr_matrix | None, signals: BehaviourSignals,
              weights: FusionWeights, rows: RowCache | None = None, feedback: Feedback = FEEDBACK,
              ) -> list[dict[str, Any]]:  # fmt: skip
    """Candidates of a request that is free text alone, with ``score`` = content + the weights for
    free text (:func:`coldrec.rank.free_text.text_features`), ``content_score`` = the retrieval
    score, and ``behaviour_source`` = the candidate among the best matches (the feedback's
    pseudo-history, :func:`coldrec.rank.feedback.pseudo_history` with ``feedback``) that gave it
    most of its item-kNN score, None when that adds nothing. ``query_row``: (1, vocabulary) the text's TF-IDF row (None: no
    word overlap); ``rows`` has the candidates' rows (:func:`coldrec.rank.free_text.query_words` of
    the two, computed as :meth:`coldrec.rank.lexical.RowCache.dots`)."""
    if not candidates:
        return []
    cols = signals.columns([c["item_id"] for c in candidates])  # (candidates,)
    words = None
    if query_row is not None and rows is not None:
        words = rows.dots(query_row, [c.get("text") or c.get("title") or "" for c in candidates])[None]
    content = np.array([c["score"] for c in candidates], dtype=np.float32)
    used = feedback_features(weights)  # the pseudo-history's features with weight: no EASE product at weight 0
    pseudo = pseudo_history(signals, cols, content[None], words, feedback) if used else None
    features = text_features(signals, cols, words, pseudo, used)
    score = fused_scores(content[None], features, weights)[0]
    sources: list[dict[str, Any] | None] = [None] * len(candidates)
    if pseudo is not None and weights.behaviour:
        credit(sources, np.flatnonzero(features["behaviour"][0] > 0), signals, pseudo, cols, candidates)
    return [{**c, "content_score": c_score, "score": f_score, "behaviour_source": source}
            for c, c_score, f_score, source in zip(candidates, content.tolist(), score.tolist(), sources)]


def fuse(candidates: list[dict[str, Any]], history: list[dict[str, Any]], signals: BehaviourSignals,
         weights: FusionWeights, lexical: LexicalVectors | RowCache | None = None,
         sequential: SequentialSignal | None = None, feedback: Feedback = FEEDBACK) -> list[dict[str, Any]]:
    """Candidates with ``score`` = fused relevance, ``content_score`` = the retrieval score, and
    ``behaviour_source`` = the history item that gave the candidate most of its item-kNN,
    transition or SASRec score, or the best match that carried it when the feedback lifted it more
    (None when those add nothing). ``history`` is newest first.

    The features are :func:`coldrec.rank.fusion.signal_features` (those ``weights`` use),
    :func:`coldrec.rank.fusion.content_features`, (with ``lexical``)
    :func:`coldrec.rank.lexical.lexical_features`, (with ``sequential``)
    :meth:`coldrec.rank.sequential.SequentialSignal.scores` and (when ``weights`` use it)
    :func:`coldrec.rank.feedback.history_feedback` with ``feedback`` themselves, for the candidates only:
    the feedback's best matches are the best candidates outside the history.
    """
    if not candidates:
        return []
    cols = signals.columns([c["item_id"] for c in candidates])  # (candidates,)
    oldest_first = [h["item_id"] for h in reversed(history)]
    weighted = signals.history_matrix([oldest_first])  # (1, items): shared by the features and the reasons
    features = {**signal_features(signals, [oldest_first], cols, weighted_signals(weights), weighted),
                **candidate_content(candidates, history, signals.decay)}
    if lexical is not None and weights.uses_lexical:
        features.update(candidate_lexical(candidates, history, lexical, signals.decay))
    if sequential is not None and weights.uses_sequential:
        features["sasrec"] = sequential.scores([oldest_first], sequential.columns([c["item_id"] for c in candidates]))
    content = np.array([c["score"] for c in candidates], dtype=np.float32)
    pseudo = None
    if weights.uses_history_feedback:
        past = set(oldest_first)
        own = [j for j, c in enumerate(candidates) if c["item_id"] in past]
        features["feedback"], pseudo = history_feedback(signals, cols, content[None], [own], feedback)
    score = fused_scores(content[None], features, weights)[0]
    sources = behaviour_sources(history, weighted, cols, features, signals, weights, candidates, pseudo)
    return [{**c, "content_score": c_score, "score": f_score, "behaviour_source": source}
            for c, c_score, f_score, source in zip(candidates, content.tolist(), score.tolist(), sources)]


@serve.deployment
class Reranker:
    def __init__(self, diversity: float = 0.0, reranker_dir: str | None = None):
        self.diversity = diversity
        self.signals: BehaviourSignals | None = None
        self.lexical: RowCache | None = None  # the catalog's candidates recur: their rows are kept
        self.sequential: SequentialSignal | None = None
        self.weights = FusionWeights()
        self.text_weights: FusionWeights | None = None  # for free text alone; None: content alone
        self.text_feedback = FEEDBACK  # how its pseudo-history is chosen: as when text_weights were learned
        self.feedback = FEEDBACK  # the same for history users' feedback, as when weights were learned
        self.calls: Counter = Counter()  # calls per method (and lists reranked by rerank_many), for info()
        if reranker_dir:
            saved = load_reranker(reranker_dir)
            self.signals, self.weights, self.sequential = saved.signals, saved.weights, saved.sequential
            self.text_weights = saved.text_weights
            if saved.text_feedback:
                self.text_feedback = Feedback(**saved.text_feedback)
            if saved.feedback:
                self.feedback = Feedback(**saved.feedback)
            self.lexical = None if saved.lexical is None else RowCache(saved.lexical)
            if self.sequential is not None:
                import torch

                torch.set_num_threads(1)  # one short sequence per request: more threads only wait

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: {diversity: 0..1 (MMR weight), weights and text_weights (for free text
        alone): coldrec.rank.fusion.FusionWeights}, tunable live; configured weights replace the
        learned ones. Checked whole before anything changes."""
        diversity = float(config.get("diversity", self.diversity))
        if not 0.0 <= diversity <= 1.0:
            raise ValueError(f"diversity must lie in [0, 1], got {diversity}")
        weights, text_weights = (None if config.get(key) is None else self._checked(key, config[key])
                                 for key in ("weights", "text_weights"))
        self.diversity = diversity
        if weights is not None:
            self.weights = weights
        if text_weights is not None:
            self.text_weights = text_weights

    def _checked(self, key: str, value: dict[str, Any]) -> FusionWeights:
        weights = FusionWeights.model_validate(value)
        if self.lexical is None and weights.uses_lexical:
            raise ValueError(f"{key} use word-overlap features, but this reranker has no lexical.npz")
        if self.sequential is None and weights.uses_sequential:
            raise ValueError(f"{key} use the sasrec feature, but this reranker has no sasrec.pt")
        return weights

    def rerank(
        self,
        candidates: list[dict[str, Any]],
        k: int,
        exclude: list[str] | None = None,
        context: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The final top ``k``: never an excluded item, then fusion and MMR; each with a reason, vectors dropped."""
        self.calls["rerank"] += 1
        return self._rerank(candidates, k, exclude, context, self._query_rows([context])[0])

    def rerank_many(
        self, candidate_lists: list[list[dict[str, Any]] | BaseException], params: list[dict[str, Any]]
    ) -> list[list[dict[str, Any]] | BaseException]:
        """``rerank`` for a batch of coalesced requests, ``params[i]`` = {k, exclude, context} for list i.

        An exception in place of a list (its search failed) is passed on, and so is one a list's own
        reranking raises, so one bad request never fails the others."""
        self.calls["rerank_many"] += 1
        self.calls["lists"] += len(candidate_lists)
        answers: list[list[dict[str, Any]] | BaseException] = []
        query_rows = self._query_rows([kwargs.get("context") for kwargs in params])  # the batch's texts at once
        for candidates, kwargs, query_row in zip(candidate_lists, params, query_rows):
            if isinstance(candidates, BaseException):
                answers.append(candidates)
                continue
            try:
                answers.append(self._rerank(candidates, **kwargs, query_row=query_row))
            except Exception as err:
                answers.append(err)
        return answers

    def info(self) -> dict[str, Any]:
        return {"diversity": self.diversity, "learned": self.signals is not None, "calls": dict(self.calls)}

    def _text_alone(self, context: dict[str, Any] | None) -> str | None:
        """The request's text when it is free text alone and has weights of its own to rank with."""
        context = context or {}
        if self.signals is None or self.text_weights is None or context.get("history"):
            return None
        return context.get("text") or None

    def _query_rows(self, contexts: list[dict[str, Any] | None]) -> list[sp.csr_matrix | None]:
        """Per request, its text's TF-IDF row when free text alone is ranked with word overlap or with
        the feedback (whose best matches are chosen by content + word overlap, as when its weights were
        learned), else None; one transform for all of them (per text, a tenth of the CPU of one
        transform each)."""
        texts = [self._text_alone(c) for c in contexts]
        wanted = [t for t in texts if t is not None]
        if (not wanted or self.lexical is None
                or not (self.text_weights.query_words or uses_feedback(self.text_weights))):
            return [None] * len(contexts)
        rows = iter(self.lexical.lexical.transform(wanted))  # (1, vocabulary) each; not kept in the cache
        return [None if t is None else next(rows) for t in texts]

    def _rerank(self, candidates: list[dict[str, Any]], k: int, exclude: list[str] | None = None,
                context: dict[str, Any] | None = None, query_row: sp.csr_matrix | None = None,
                ) -> list[dict[str, Any]]:  # fmt: skip
        seen = set(exclude or ())
        fresh = [c for c in candidates if c["item_id"] not in seen]
        history, words = (context or {}).get("history") or [], (context or {}).get("words") or []
        if self.signals is not None and history:
            fresh = fuse(fresh, history, self.signals, self.weights, self.lexical, self.sequential, self.feedback)
        elif self._text_alone(context) is not None:
            # The history weights' item priors were learned beside history features and would bury
            # the items the words describe; free text alone has weights learned on free-text queries.
            fresh = fuse_text(fresh, query_row, self.signals, self.text_weights, self.lexical, self.text_feedback)
        return [
            {"item_id": c["item_id"], "title": c["title"], "score": c["score"],
             "reason": explain(c, history, words, c.get("behaviour_source"))}
            for c in mmr_rerank(fresh, k, self.diversity)
        ]
