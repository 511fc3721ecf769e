"""Fusion weights of their own for a request that is free text alone: no history, only words.

The fused reranker's weights (:func:`coldrec.rank.fusion.fit_fusion`) are learned on validation
users who have a history. For free text alone every history feature is zero and only the item
priors are left, at a scale learned beside those features: too large, and popular items bury the
best match for the words; dropped, and the priors' real help is lost. So free text alone gets
weights learned on its own kind of query, the same way (coordinate ascent on NDCG@10 from content
alone and from the softmax fit, the better one kept): validation examples turned into free-text
queries by :func:`coldrec.eval.cold_users.free_text_examples` (a description made from the
words of the history's items, never of the target). Its features, each (queries, items) or (items,):

- ``content``: the profile model's cosine of the text and the item (weight 1);
- ``query_words``: the cosine of the query text's and the item text's TF-IDF rows
  (:class:`coldrec.rank.lexical.LexicalVectors`): a brand, a model number or a rare word spelled
  out in both, which the profile model blurs;
- ``behaviour`` and ``ease``: pseudo-relevance feedback (:class:`Feedback`). The query's best ``items``
  matches by ``content + words * query_words`` stand in for the history it does not have, weighted by a
  softmax of that score at ``temperature`` (:mod:`coldrec.rank.feedback`); these are the item-kNN and EASE scores of that
  weighted pseudo-history (:meth:`coldrec.rank.signals.BehaviourSignals.of_items`): what people chose
  together with the items that fit the words (BENCHMARKS.md, ``quality-free-text-feedback-cpu``);
- ``popularity`` and ``freshness``: the priors of :class:`coldrec.rank.signals.BehaviourSignals`.

Evaluation (the ``fused`` method on the cold-user protocol's free-text bucket) and the Serve
Reranker compute them with :func:`text_features` (the word overlap as :func:`query_words`, in the
Reranker as the same products over its cached rows), so what is measured is what is served. One
difference is the candidates: evaluation ranks the whole catalog and takes the feedback items from
it; the Reranker reorders the Retriever's candidates and takes them from those.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coldrec.rank.feedback import FEEDBACK, Feedback, pseudo_history
from coldrec.rank.fusion import FusionGrid, FusionWeights, learn_weights, search_from_softmax, tuning_queries
from coldrec.rank.signals import BehaviourSignals

TEXT_FEATURES = ("query_words", "behaviour", "ease", "popularity", "freshness")  # all free text alone can weigh
FEEDBACK_FEATURES = ("behaviour", "ease")  # those of them that come from the pseudo-history


def query_words(queries: sp.csr_matrix, candidates: sp.csr_matrix) -> np.ndarray:
    """(queries, candidates) word overlap of L2-normalised TF-IDF rows: a cosine in [0, 1]."""
    return np.asarray((queries @ candidates.T).toarray(), dtype=np.float32)


def feedback_features(weights: FusionWeights) -> tuple[str, ...]:
    """The feedback's features that free-text ``weights`` give weight (none: no
    :func:`coldrec.rank.feedback.pseudo_history` is needed)."""
    return tuple(name for name in FEEDBACK_FEATURES if getattr(weights, name))


def uses_feedback(weights: FusionWeights) -> bool:
    """Whether free-text ``weights`` give the feedback's features weight (then :func:`coldrec.rank.feedback.pseudo_history` is needed)."""
    return bool(feedback_features(weights))


def text_features(signals: BehaviourSignals, cols: np.ndarray, words: np.ndarray | None = None,
                  feedback: sp.csr_matrix | None = None,
                  names: Sequence[str] = FEEDBACK_FEATURES) -> dict[str, np.ndarray]:
    """The features of free text alone for candidates ``cols`` (signal rows, -1 = unknown): the item
    priors; ``query_words`` when ``words``, (queries, candidates) of :func:`query_words`, is given; and
    those of ``names`` (``behaviour``, ``ease``) of the ``feedback`` (:func:`coldrec.rank.feedback.pseudo_history`)
    when that is given (a serving request asks only for those its weights use: :func:`feedback_features`)."""
    features = {"popularity": signals.popularity(cols), "freshness": signals.freshness(cols)}
    if words is not None:
        features["query_words"] = words
    if feedback is not None and names:
        features.update(signals.of_items(feedback, cols, names))
    return features


def fit_text_fusion(signals: BehaviourSignals, encoder, item_vectors: np.ndarray, item_ids: Sequence[str],
                    queries: pd.DataFrame, lexical=None, lexical_rows: sp.csr_matrix | None = None,
                    grid: FusionGrid | None = None, batch_size: int = 64, max_users: int | None = 2000,
                    seed: int = 0, softmax_start: bool = True, feedback: Feedback = FEEDBACK,
                    ) -> tuple[FusionWeights, dict]:  # fmt: skip
    """Weights for free text alone, learned on ``queries`` (rows of free_text, profile_text and
    target, a catalog item id: :func:`coldrec.eval.cold_users.free_text_examples` of validation).

    ``item_vectors`` (items, dim) are the item tower's vectors in ``item_ids`` order; ``lexical``
    (a fitted :class:`coldrec.rank.lexical.LexicalVectors`) and ``lexical_rows`` (the items' rows
    in that order), when given, add ``query_words``. Returns (weights, report) as
    :func:`coldrec.rank.fusion.learn_weights` does; only the features above get weight.
    """
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    queries, content, targets = tuning_queries(encoder, item_vectors, position, queries, max_users, seed, batch_size)
    words = (None if lexical is None or lexical_rows is None
             else query_words(lexical.transform(queries["free_text"].tolist()), lexical_rows))
    cols = signals.columns(item_ids)
    features = text_features(signals, cols, words, pseudo_history(signals, cols, content, words, feedback))
    weights, report = learn_weights(content, features, targets, grid, seed)
    if softmax_start:
        weights, report = search_from_softmax(content, features, targets, weights, report, grid, seed)
    return weights, {**report, "from": "validation examples as free-text descriptions",
                     "feedback": feedback._asdict()}
