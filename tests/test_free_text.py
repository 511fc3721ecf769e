"""Weights for free text alone: validation examples described in words, the features, the fit, and
the Serve Reranker scoring such a request as evaluation does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coldrec.eval.cold_users import free_text_examples
from coldrec.rank.feedback import Feedback, feedback_items, pseudo_history
from coldrec.rank.free_text import TEXT_FEATURES, feedback_features, fit_text_fusion, query_words, text_features
from coldrec.rank.fusion import FusionWeights, fused_scores, save_reranker
from coldrec.rank.lexical import LexicalVectors
from coldrec.rank.signals import BehaviourSignals
from coldrec.serve.reranker import Reranker

# Three topics, four items each; every item's title names its topic and a word of its own.
TOPICS = {"pen": ["ballpoint", "gel", "fountain", "marker"], "paper": ["copy", "sticky", "legal", "index"],
          "chair": ["mesh", "lumbar", "mat", "stool"]}
ITEMS = pd.DataFrame([{"item_id": f"{t}-{i}", "title": f"{w} {t}", "categories": t, "text": f"{w} {t}. {t}"}
                      for t, words in TOPICS.items() for i, w in enumerate(words)])
ITEM_IDS = ITEMS["item_id"].tolist()


def examples(users: int = 30) -> pd.DataFrame:
    """Users stay in one topic: history of three items, target a fourth."""
    rows = []
    for u in range(users):
        topic = list(TOPICS)[u % 3]
        seq = [f"{topic}-{(u + s) % 4}" for s in range(4)]
        rows.append({"user_id": f"u{u}", "history": seq[:-1], "target": seq[-1], "profile_text": "x"})
    return pd.DataFrame(rows)


def test_free_text_examples_describe_the_history_and_keep_the_target():
    valid = pd.concat([examples(3), pd.DataFrame([{"user_id": "lone", "history": ["pen-0"], "target": "pen-0",
                                                   "profile_text": "x"}])], ignore_index=True)
    out = free_text_examples(valid, ITEMS, profile_items=5, scene="office")
    assert len(out) == 3  # the lone user's only history item is its target: nothing to describe
    assert (out["target"] == valid["target"][:3]).all()
    assert all(h == [] for h in out["history"])
    assert out["free_text"][0] == "Looking for: pen" and out["profile_text"][0] == "office: Looking for: pen"


class WordEncoder:
    """A stand-in profile model: texts and items are random vectors (content carries nothing)."""

    def __init__(self, dim: int = 8):
        self.rng = np.random.default_rng(0)
        self.dim = dim

    def encode_users(self, texts, batch_size=64):
        vectors = self.rng.normal(size=(len(texts), self.dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_fit_learns_word_overlap_when_the_words_name_the_target():
    vocabulary = LexicalVectors.fit(ITEMS["text"].tolist())
    rows = vocabulary.transform(ITEMS["text"].tolist())
    # Each query spells out its target's own word; content is noise.
    queries = pd.DataFrame([{"free_text": f"Looking for: {ITEMS['title'][i].split()[0]}", "profile_text": "q",
                             "target": ITEM_IDS[i]} for i in range(len(ITEM_IDS)) for _ in range(3)])
    vectors = WordEncoder().encode_users(ITEM_IDS)
    signals = BehaviourSignals.fit(examples(), ITEM_IDS)
    weights, report = fit_text_fusion(signals, WordEncoder(), vectors, ITEM_IDS, queries, vocabulary, rows)
    assert weights.query_words > 0 and report["ndcg@10"] > report["content_only_ndcg@10"]
    assert weights == FusionWeights(**{n: getattr(weights, n) for n in TEXT_FEATURES})  # nothing a history gives
    words = query_words(vocabulary.transform(["a gel pen"]), rows)
    assert words.shape == (1, len(ITEM_IDS)) and np.argmax(words[0]) == ITEM_IDS.index("pen-1")


def test_feedback_items_weigh_the_best_matches_by_a_softmax():
    first = np.array([[0.9, 0.1, 0.8, 0.2], [0.0, 0.5, 0.0, 0.6]], np.float32)
    cols = np.array([3, 0, -1, 1])  # the third candidate is unknown to the signals
    weighted = feedback_items(first, cols, n_items=5, items=2, temperature=0.1).toarray()
    e = np.exp(-1.0)  # the second best, 0.1 below the best, at temperature 0.1
    assert weighted[0] == pytest.approx([0, 0, 0, 1 / (1 + e), 0])  # the unknown one's share is dropped
    assert weighted[1] == pytest.approx([e / (1 + e), 1 / (1 + e), 0, 0, 0])
    assert feedback_items(first[:, :0], cols[:0], n_items=5).nnz == 0  # no candidates: no feedback


def test_fit_learns_the_feedback_when_the_target_goes_with_the_best_match():
    # Each query names one item's own word, and the target is another item of that topic: people who
    # chose the named item chose it too (examples() stay in one topic). Content is noise.
    vocabulary = LexicalVectors.fit(ITEMS["text"].tolist())
    rows = vocabulary.transform(ITEMS["text"].tolist())
    same_topic = [i - i % 4 + (i + 1) % 4 for i in range(len(ITEM_IDS))]  # the next item of item i's topic
    queries = pd.DataFrame([{"free_text": f"Looking for: {ITEMS['title'][i].split()[0]}", "profile_text": "q",
                             "target": ITEM_IDS[same_topic[i]]} for i in range(len(ITEM_IDS)) for _ in range(3)])
    vectors = WordEncoder().encode_users(ITEM_IDS)
    signals = BehaviourSignals.fit(examples(), ITEM_IDS)
    weights, report = fit_text_fusion(signals, WordEncoder(), vectors, ITEM_IDS, queries, vocabulary, rows)
    assert weights.behaviour > 0 and report["ndcg@10"] > report["content_only_ndcg@10"]
    assert report["feedback"] == {"items": 10, "temperature": 0.1, "words": 1.0}
    content = np.zeros((1, len(ITEM_IDS)), np.float32)
    words = query_words(vocabulary.transform(["Looking for: gel"]), rows)
    cols = signals.columns(ITEM_IDS)
    behaviour = text_features(signals, cols, words, pseudo_history(signals, cols, content, words))["behaviour"][0]
    pens = [ITEM_IDS.index(f"pen-{i}") for i in (0, 2, 3)]  # pen-1 is the gel pen: the best match itself
    assert set(np.argsort(-behaviour)[:3]) == set(pens)


def reranker_with_text_weights(tmp_path, text_weights: FusionWeights,
                               ease_lambda: float | None = None) -> tuple[Reranker, BehaviourSignals]:
    signals = BehaviourSignals.fit(examples(), ITEM_IDS, ease_lambda=ease_lambda)
    vocabulary = LexicalVectors.fit(ITEMS["text"].tolist())
    save_reranker(tmp_path, signals, FusionWeights(behaviour=1.0), {"on": "test"}, vocabulary,
                  text_weights=text_weights, text_report={"on": "test"})
    return Reranker.func_or_class(reranker_dir=str(tmp_path)), signals


def test_served_free_text_scores_equal_the_evaluated_ones(tmp_path):
    text_weights = FusionWeights(query_words=2.0, behaviour=1.0, popularity=0.5, freshness=0.3)
    reranker, signals = reranker_with_text_weights(tmp_path, text_weights)
    unit = np.ones(4, np.float32) / 2
    ids = ["pen-1", "paper-0", "pen-2", "brand-new"]
    texts = [*ITEMS.set_index("item_id").loc[ids[:3], "text"], "gel ink refill"]
    content = [0.4, 0.6, 0.5, 0.3]
    cands = [{"item_id": i, "title": i, "text": t, "score": s, "vector": unit} for i, t, s in zip(ids, texts, content)]
    text = "a gel pen for the office"
    ranked = reranker.rerank(cands, 4, [], {"history": [], "words": ["gel", "pen", "office"], "text": text})
    vocabulary = LexicalVectors.fit(ITEMS["text"].tolist())
    words = query_words(vocabulary.transform([text]), vocabulary.transform(texts))
    cols = signals.columns(ids)
    feedback = pseudo_history(signals, cols, np.array([content], np.float32), words)
    features = text_features(signals, cols, words, feedback)
    assert features["behaviour"][0][2] > 0  # the fountain pen goes with the gel pen, the best match
    expected = dict(zip(ids, fused_scores(np.array([content], np.float32), features, text_weights)[0]))
    assert {r["item_id"]: r["score"] for r in ranked} == pytest.approx(expected, abs=1e-6)
    assert ranked[0]["item_id"] == "pen-1" and ranked[0]["reason"] == "matches 'gel', 'pen'"
    # Coalesced requests have their texts' rows made in one transform, with the same answers.
    other = {"history": [], "words": ["stool"], "text": "a stool"}
    params = [{"k": 4, "context": {"history": [], "words": ["gel", "pen", "office"], "text": text}},
              {"k": 4, "context": other}, {"k": 4}]
    assert reranker.rerank_many([cands, cands, cands], params) == [
        ranked, reranker.rerank(cands, 4, [], other), reranker.rerank(cands, 4)]
    # Feedback without word-overlap weight: its best matches are still chosen with the words, as in the fit.
    reranker.reconfigure({"text_weights": {"behaviour": 1.0}})
    alone = reranker.rerank(cands, 4, [], {"history": [], "words": ["gel", "pen", "office"], "text": text})
    expected = dict(zip(ids, fused_scores(np.array([content], np.float32), features, FusionWeights(behaviour=1.0))[0]))
    assert {r["item_id"]: r["score"] for r in alone} == pytest.approx(expected, abs=1e-6)
    # The history weights are not used for free text alone, nor the text weights with a history.
    history = [{"item_id": "pen-0", "title": "Pen", "text": "ballpoint pen. pen", "vector": unit}]
    with_history = reranker.rerank(cands, 4, [], {"history": history, "words": [], "text": None})
    assert {r["item_id"]: r["score"] for r in with_history}["brand-new"] == pytest.approx(0.3)


@pytest.mark.parametrize("text_weights", [FusionWeights(query_words=1.0, ease=2.0, popularity=0.5),
                                          FusionWeights(query_words=1.0, behaviour=1.0, ease=2.0),
                                          FusionWeights(query_words=1.0, popularity=0.5)])
def test_served_free_text_computes_only_the_feedback_features_it_weighs(tmp_path, text_weights):
    used = feedback_features(text_weights)
    assert used == tuple(n for n in ("behaviour", "ease") if getattr(text_weights, n))
    reranker, signals = reranker_with_text_weights(tmp_path, text_weights, ease_lambda=1.0)
    ids = ["pen-1", "paper-0", "pen-2"]
    texts = ITEMS.set_index("item_id").loc[ids, "text"].tolist()
    content = [0.4, 0.6, 0.5]
    cands = [{"item_id": i, "title": i, "text": t, "score": s, "vector": np.ones(4, np.float32) / 2}
             for i, t, s in zip(ids, texts, content)]
    text = "a gel pen"
    ranked = reranker.rerank(cands, 3, [], {"history": [], "words": ["gel", "pen"], "text": text})
    vocabulary = LexicalVectors.fit(ITEMS["text"].tolist())
    words = query_words(vocabulary.transform([text]), vocabulary.transform(texts))
    cols = signals.columns(ids)
    every = text_features(signals, cols, words, pseudo_history(signals, cols, np.array([content], np.float32), words))
    some = text_features(signals, cols, words, pseudo_history(signals, cols, np.array([content], np.float32), words),
                         used)
    assert set(every) - set(some) == {"behaviour", "ease"} - set(used)
    assert all(np.ptp(every[name]) > 0 for name in ("behaviour", "ease"))  # both carry something to lose
    expected = dict(zip(ids, fused_scores(np.array([content], np.float32), every, text_weights)[0]))
    assert {r["item_id"]: r["score"] for r in ranked} == pytest.approx(expected, abs=1e-6)


def test_an_item_the_feedback_carried_says_which_match_it_goes_with(tmp_path):
    reranker, _ = reranker_with_text_weights(tmp_path, FusionWeights(query_words=1.0, behaviour=4.0))
    unit = np.ones(4, np.float32) / 2
    cands = [{"item_id": i, "title": t, "text": f"{t}. pen", "score": 0.3, "vector": unit}
             for i, t in (("pen-1", "gel pen"), ("pen-2", "fountain pen"), ("chair-0", "mesh chair"))]
    ranked = reranker.rerank(cands, 3, [], {"history": [], "words": ["gel"], "text": "gel"})
    reasons = {r["item_id"]: r["reason"] for r in ranked}
    assert reasons == {"pen-1": "matches 'gel'", "pen-2": "often chosen with 'gel pen'",
                       "chair-0": "close to your description"}


def test_the_reranker_chooses_the_pseudo_history_as_its_weights_were_learned(tmp_path):
    # Weights saved as learned with a one-item pseudo-history: the Reranker takes the one best match.
    signals = BehaviourSignals.fit(examples(), ITEM_IDS)
    save_reranker(tmp_path, signals, FusionWeights(), {"on": "test"}, text_weights=FusionWeights(behaviour=1.0),
                  text_report={"feedback": {"items": 1, "temperature": 0.1, "words": 1.0}})
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    assert reranker.text_feedback == Feedback(items=1)
    unit = np.ones(4, np.float32) / 2
    ids, content = ["pen-0", "paper-0", "pen-1", "paper-1"], [0.5, 0.45, 0.3, 0.3]
    cands = [{"item_id": i, "title": i, "text": "", "score": s, "vector": unit} for i, s in zip(ids, content)]
    ranked = reranker.rerank(cands, 4, [], {"history": [], "words": [], "text": "something"})
    cols = signals.columns(ids)
    one = text_features(signals, cols, None, pseudo_history(signals, cols, np.array([content], np.float32), None,
                                                            Feedback(items=1)))
    assert one["behaviour"][0][3] == 0  # only pen-0 stands in for the history: nothing for paper-1
    expected = fused_scores(np.array([content], np.float32), one, FusionWeights(behaviour=1.0))[0]
    assert {r["item_id"]: r["score"] for r in ranked} == pytest.approx(dict(zip(ids, expected)), abs=1e-6)


def test_text_weights_are_live_tunable_and_checked_whole(tmp_path):
    reranker, _ = reranker_with_text_weights(tmp_path, FusionWeights(popularity=1.0))
    cands = [{"item_id": i, "title": i, "text": "", "score": 0.5, "vector": np.ones(2, np.float32)}
             for i in ("pen-0", "brand-new")]
    context = {"history": [], "words": [], "text": "anything"}
    assert [r["item_id"] for r in reranker.rerank(cands, 2, [], context)] == ["pen-0", "brand-new"]
    reranker.reconfigure({"text_weights": {"freshness": 1.0}})  # a brand-new item is fresh, pen-0 is not
    assert [r["item_id"] for r in reranker.rerank(cands, 2, [], context)] == ["brand-new", "pen-0"]
    bare = Reranker.func_or_class(reranker_dir=None)
    with pytest.raises(ValueError, match="text_weights use word-overlap"):
        bare.reconfigure({"diversity": 0.5, "text_weights": {"query_words": 1.0}})
    assert bare.diversity == 0.0  # nothing changed
