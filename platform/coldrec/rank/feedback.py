"""Pseudo-relevance feedback: the items a query's first-stage score likes best stand in for a history.

A classic IR trick, applied to behaviour. The best ``items`` matches of a query, weighted by a
softmax of their score, form a (queries, items) pseudo-history, and
:meth:`coldrec.rank.signals.BehaviourSignals.of_items` scores it as it scores a real one: what
people chose together with the items the query fits.

- Free text alone (:mod:`coldrec.rank.free_text`) has no history. Its pseudo-history, chosen by
  content + word overlap, gives its ``behaviour`` and ``ease`` features.
- A user with a history (:mod:`coldrec.rank.fusion`, the ``feedback`` weight): the profile model's
  best matches that are not already in the history, chosen by content alone. Their item-kNN reaches
  the neighbours of what the model would recommend, not only of what the user chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from coldrec.rank.signals import BehaviourSignals

OWN = -1e9  # the first-stage score of a history item: never among the best matches, weight 0 if it must be


class Feedback(NamedTuple):
    """How a pseudo-history is chosen; saved with the weights learned with it (free text:
    ``text_report["feedback"]``; history users: ``report["feedback"]``, without ``words``), so the
    Reranker applies the settings its weights were learned for."""

    items: int = 10  # the best matches whose behaviour neighbours the query gets
    temperature: float = 0.1  # of the softmax that weighs them by their first-stage score
    words: float = 1.0  # query_words' weight in that first-stage score (content's is 1); free text only


FEEDBACK = Feedback()


def feedback_items(first: np.ndarray, cols: np.ndarray, n_items: int, items: int = FEEDBACK.items,
                   temperature: float = FEEDBACK.temperature) -> sp.csr_matrix:
    """(queries, n_items) pseudo-history: each query's ``items`` best candidates by ``first``
    (queries, candidates), weighted by the softmax of their scores over ``temperature``, at their signal
    rows ``cols`` (candidates,). A candidate the signals do not know (-1) keeps its share of the weight
    and adds nothing: a brand-new item has no behaviour neighbours."""
    m = min(items, first.shape[1])
    if m == 0:
        return sp.csr_matrix((first.shape[0], n_items), dtype=np.float32)
    top = np.argpartition(-first, m - 1, axis=1)[:, :m]  # (queries, m) the best m, in no order
    best = np.take_along_axis(first, top, axis=1)
    weights = np.exp((best - best.max(axis=1, keepdims=True)) / temperature)
    weights /= weights.sum(axis=1, keepdims=True)
    at = np.asarray(cols)[top]  # (queries, m) their signal rows
    order = np.argsort(at, axis=1)  # CSR built directly, its columns ascending: a quarter of the COO route's CPU
    at, weights = np.take_along_axis(at, order, axis=1), np.take_along_axis(weights, order, axis=1)
    known = (at >= 0) & (weights > 0)  # a history item forced in (too few others) weighs nothing
    indptr = np.concatenate([[0], np.cumsum(known.sum(axis=1))])
    return sp.csr_matrix((weights[known].astype(np.float32), at[known], indptr), shape=(first.shape[0], n_items))


def pseudo_history(signals: BehaviourSignals, cols: np.ndarray, content: np.ndarray,
                   words: np.ndarray | None = None, feedback: Feedback = FEEDBACK) -> sp.csr_matrix:
    """:func:`feedback_items` of ``content`` (queries, candidates) cosines, plus ``feedback.words`` x
    ``words`` when given, over candidates ``cols``: the (queries, signal items) stand-in history."""
    first = content if words is None else content + feedback.words * words
    return feedback_items(first, cols, len(signals.item_ids), feedback.items, feedback.temperature)


def history_feedback(signals: BehaviourSignals, cols: np.ndarray, content: np.ndarray,
                     own: Sequence[Sequence[int]], feedback: Feedback = FEEDBACK) -> tuple[np.ndarray, sp.csr_matrix]:
    """The ``feedback`` feature of users with a history: (queries, candidates) item-kNN of the
    pseudo-history of ``content`` (queries, candidates) cosines, the candidates at positions
    ``own[q]`` (query q's history items) left out of it; with that pseudo-history."""
    first = np.array(content, dtype=np.float32, copy=True)
    for q, at in enumerate(own):
        first[q, np.asarray(at, dtype=np.int64)] = OWN
    pseudo = feedback_items(first, cols, len(signals.item_ids), feedback.items, feedback.temperature)
    return signals.of_items(pseudo, cols, names=("behaviour",))["behaviour"], pseudo
