"""Pseudo-relevance feedback for users with a history: evaluated as served, saved settings applied."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coldrec.rank.feedback import OWN, Feedback, feedback_items, history_feedback
from coldrec.rank.fusion import (
    FusionWeights, catalog_feedback, content_features, fit_fusion, fused_scores, history_vectors, load_reranker,
    save_reranker, signal_features,
)  # fmt: skip
from coldrec.rank.signals import BehaviourSignals
from coldrec.serve.reranker import Reranker, fuse
from synthetic import TASTE_ITEMS as ITEMS, taste_examples as examples


def test_history_feedback_leaves_the_history_out_of_the_best_matches():
    signals = BehaviourSignals.fit(examples(), ITEMS)
    cols = signals.columns(ITEMS)
    content = np.array([[0.9, 0.1, 0.2, 0.3, 0.8, 0.0, 0.0, 0.0]], np.float32)  # i0 best, then i4
    feature, pseudo = history_feedback(signals, cols, content, [[0]], Feedback(items=1))
    assert pseudo.toarray().tolist() == [[0, 0, 0, 0, 1, 0, 0, 0]]  # i0 is in the history: i4 stands in
    assert np.allclose(feature, signals.of_items(pseudo, cols)["behaviour"])
    assert feature[0, 5] > 0 and feature[0, 1] == 0  # i4's group, not i0's
    # With fewer candidates outside the history than items, a history item is forced in at weight 0.
    forced = feedback_items(np.array([[OWN, 0.5]], np.float32), np.array([0, 1]), 8, items=2)
    assert forced.toarray()[0].tolist() == [0, 1, 0, 0, 0, 0, 0, 0]


def catalog_setup():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(len(ITEMS), 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    position = {item_id: i for i, item_id in enumerate(ITEMS)}
    return vectors, position


@pytest.mark.parametrize("feedback", [Feedback(), Feedback(items=2, temperature=0.05)])
def test_serving_feedback_equals_the_evaluated_one(feedback):
    signals = BehaviourSignals.fit(examples(), ITEMS, decay=0.8, ease_lambda=1.0)
    weights = FusionWeights(behaviour=1.0, feedback=3.0, unseen=0.2, newest=0.3)
    vectors, position = catalog_setup()
    history = ["i1", "i5"]  # oldest first
    content = np.linspace(0.8, 0.1, len(ITEMS), dtype=np.float32)[None]  # i0 best ... i7 worst
    cols = signals.columns(ITEMS)
    features = {**signal_features(signals, [history], cols),
                **content_features(history_vectors([history], vectors, position), vectors, signals.decay),
                "feedback": catalog_feedback(signals, cols, content, [history], position, feedback)}
    expected = fused_scores(content, features, weights)[0]
    served = fuse([{"item_id": i, "title": i, "score": float(s), "vector": vectors[position[i]]}
                   for i, s in zip(ITEMS, content[0])],
                  [{"item_id": h, "title": h, "vector": vectors[position[h]]} for h in reversed(history)],
                  signals, weights, feedback=feedback)
    assert np.allclose([c["score"] for c in served], expected, atol=1e-6)
    assert features["feedback"].any()


def test_the_reranker_applies_the_saved_feedback_and_names_the_match_that_carried_an_item(tmp_path):
    signals = BehaviourSignals.fit(examples(), ITEMS)
    save_reranker(tmp_path, signals, FusionWeights(feedback=5.0),
                  {"on": "test", "feedback": Feedback(items=1)._asdict()})
    assert load_reranker(tmp_path).feedback == Feedback(items=1)._asdict()
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    assert reranker.feedback == Feedback(items=1)
    unit = np.ones(4, np.float32) / 2
    # i4 is the best candidate outside the history (i0): its group (i5, i6) is lifted, i1-i3 are not.
    cands = [{"item_id": i, "title": i.upper(), "text": "", "score": s, "vector": unit}
             for i, s in (("i0", 0.9), ("i4", 0.6), ("i5", 0.3), ("i1", 0.3))]
    history = [{"item_id": "i0", "title": "I0", "vector": unit}]
    ranked = reranker.rerank(cands, 4, [], {"history": history, "words": []})
    by_id = {r["item_id"]: r for r in ranked}
    assert by_id["i5"]["score"] > 0.3 and by_id["i1"]["score"] == pytest.approx(0.3)
    assert by_id["i5"]["reason"] == "often chosen with 'I4'"
    # A reranker fitted before the feedback existed has no feedback weight and ranks as before.
    reranker.reconfigure({"weights": {}})
    assert by_id["i5"]["score"] > [r for r in reranker.rerank(cands, 4, [], {"history": history})
                                   if r["item_id"] == "i5"][0]["score"]


class Encoder:
    """A stand-in profile model: a user's vector is the catalog vector of the item named first in the text."""

    def __init__(self, vectors: np.ndarray, position: dict[str, int]):
        self.vectors, self.position = vectors, position

    def encode_users(self, texts, batch_size=64):
        return np.stack([self.vectors[self.position[t.split()[0]]] for t in texts])


def test_fit_fusion_learns_the_feedback_only_when_asked_and_reports_its_settings():
    # The profile text points at i4, the history at the other group; the targets are i4's neighbours:
    # only the item-kNN of the content's best match outside the history finds them.
    train = examples()
    vectors, position = catalog_setup()
    valid = pd.DataFrame({"history": [["i0", "i1"], ["i2", "i3"], ["i1", "i2"], ["i3", "i0"]],
                          "profile_text": ["i4 a", "i4 b", "i4 c", "i4 d"], "target": ["i5", "i6", "i5", "i6"]})
    signals = BehaviourSignals.fit(train, ITEMS)
    encoder = Encoder(vectors, position)
    weights, report = fit_fusion(signals, encoder, vectors, ITEMS, valid, softmax_start=False)
    assert weights.feedback == 0 and "feedback" not in report
    weights, report = fit_fusion(signals, encoder, vectors, ITEMS, valid, softmax_start=False, feedback=True)
    assert weights.feedback > 0 and report["feedback"] == {"items": 10, "temperature": 0.1}
    assert report["ndcg@10"] > report["content_only_ndcg@10"]
