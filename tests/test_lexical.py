"""TF-IDF word overlap: the vectors, their features, and the same features in evaluation and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coldrec.rank import lexical as lexical_module
from coldrec.rank.fusion import (
    HISTORY_MAX_ITEMS, FusionWeights, catalog_lexical_features, content_features, fused_scores, history_vectors,
    load_reranker, save_reranker, signal_features,
)  # fmt: skip
from coldrec.rank.lexical import TEXT_CHARS, LexicalVectors, RowCache, lexical_features
from coldrec.rank.signals import BehaviourSignals
from coldrec.serve.reranker import Reranker, fuse

TEXTS = {
    "i0": "eSUN PLA filament 1.75mm red",
    "i1": "eSUN PLA filament 1.75mm blue",
    "i2": "Gorilla super glue gel clear",
    "i3": "FlashForge Creator Pro 3D printer",
    "i4": "FlashForge platform sticker for Creator Pro",
    "i5": "digital multimeter with test leads",
}
ITEMS = list(TEXTS)


def test_vectors_survive_save_and_load_and_new_texts_use_the_fitted_vocabulary(tmp_path):
    lexical = LexicalVectors.fit(list(TEXTS.values()))
    rows = lexical.transform(list(TEXTS.values()))
    assert np.allclose(np.asarray(rows.multiply(rows).sum(axis=1)).ravel(), 1.0)  # L2-normalised rows
    lexical.save(tmp_path)
    loaded = LexicalVectors.load(tmp_path)
    assert loaded.vocabulary_size == lexical.vocabulary_size
    new = ["eSUN PETG filament green", "", None, float("nan"), "zebra"]  # a new item, no text, unknown words
    assert np.allclose(loaded.transform(new).toarray(), lexical.transform(new).toarray())
    assert loaded.transform(new)[1:].nnz == 0
    overlap = (loaded.transform(new[:1]) @ rows.T).toarray()[0]
    assert overlap.argmax() in (0, 1) and overlap[2] == 0  # shares eSUN, filament with i0 and i1; nothing with glue
    assert LexicalVectors.load_if_present(tmp_path / "missing") is None
    assert LexicalVectors.fit_if_any([None, "  "]) is None
    with pytest.raises(ValueError, match="empty"):
        LexicalVectors.fit(["", None])


def test_only_the_first_characters_count():
    lexical = LexicalVectors.fit(list(TEXTS.values()) + ["x" * TEXT_CHARS + " glue"])
    assert lexical.transform(["x" * TEXT_CHARS + " glue"]).toarray().tolist() == lexical.transform(["x" * TEXT_CHARS]).toarray().tolist()


def test_lexical_features_are_the_content_features_over_tfidf_rows_without_self_overlap(monkeypatch):
    monkeypatch.setattr(lexical_module, "_CHUNK_ROWS", 3)  # several chunks, one query longer than a chunk
    rows = LexicalVectors.fit(list(TEXTS.values())).transform(list(TEXTS.values()))
    position = {item_id: i for i, item_id in enumerate(ITEMS)}
    histories = [["i0", "i3"], [], ["gone"], ITEMS, ["i5", "i2", "i5"]]  # oldest first; a repeat counts once
    sparse = catalog_lexical_features(histories, rows, position, decay=0.6)
    dense = rows.toarray()
    expected = content_features(history_vectors(histories, dense, position), dense, decay=0.6)
    overlap = dense @ dense.T
    np.fill_diagonal(overlap, 0.0)  # an item's overlap with itself counts 0
    for q, hist in enumerate(histories):
        newest_first = list(dict.fromkeys(position[i] for i in reversed(hist) if i in position))
        outside = np.setdiff1d(np.arange(len(ITEMS)), newest_first)
        for ours, theirs in zip(("lexical_newest", "lexical_mean", "lexical_max"),
                                ("newest", "history_mean", "history_max")):
            assert sparse[ours].shape == (len(histories), len(ITEMS))
            # items outside the history: exactly the content features over the TF-IDF rows
            assert np.allclose(sparse[ours][q, outside], expected[theirs][q, outside], atol=1e-6)
        if newest_first:
            block = overlap[newest_first]
            weights = 0.6 ** np.arange(len(newest_first))
            assert np.allclose(sparse["lexical_newest"][q], block[0], atol=1e-6)
            assert np.allclose(sparse["lexical_mean"][q], weights @ block / weights.sum(), atol=1e-6)
            assert np.allclose(sparse["lexical_max"][q], block[:HISTORY_MAX_ITEMS].max(axis=0), atol=1e-6)
    assert sparse["lexical_newest"][0, position["i3"]] == 0  # the newest item: no overlap with itself
    assert sparse["lexical_max"][0, position["i0"]] == 0  # and i0 shares no word with i3
    assert not any(sparse[name][1:3].any() for name in sparse)  # no catalog item in the history: zero
    plain = lexical_features(history_vectors(histories, rows, position), rows, 0.6, HISTORY_MAX_ITEMS)
    assert plain["lexical_newest"][0, position["i3"]] == pytest.approx(1.0)  # without ``own``: self counts


def test_served_lexical_features_equal_the_evaluated_ones(tmp_path):
    train = pd.DataFrame({"user_id": ["a", "b", "c"], "history": [["i0"], ["i3"], ["i2"]], "target": ["i1", "i4", "i5"]})
    signals = BehaviourSignals.fit(train, ITEMS, decay=0.7)
    vocabulary = LexicalVectors.fit(list(TEXTS.values()))
    weights = FusionWeights(behaviour=1.0, lexical_newest=0.5, lexical_mean=0.3, lexical_max=0.2)
    catalog = {**TEXTS, "brand-new": "eSUN PLA filament 1.75mm green"}  # added after the fit
    catalog_ids = list(catalog)
    rows = vocabulary.transform(list(catalog.values()))
    position = {item_id: i for i, item_id in enumerate(catalog_ids)}
    history = ["i3", "i0"]  # oldest first
    cands = ["i1", "i4", "i2", "brand-new", "i0"]  # i0 is in the history
    content = np.array([0.5, 0.4, 0.6, 0.3, 0.45], dtype=np.float32)
    vectors = np.eye(len(catalog_ids), dtype=np.float32)
    cand_cols = [position[c] for c in cands]
    features = {**signal_features(signals, [history], signals.columns(cands)),
                **content_features(history_vectors([history], vectors, position), vectors[cand_cols], signals.decay),
                **{k: v[:, cand_cols] for k, v in catalog_lexical_features([history], rows, position, signals.decay).items()}}
    expected = fused_scores(content[None], features, weights)[0]
    assert features["lexical_newest"][0, 3] > 0  # the new item shares words with i0 from its text alone
    assert features["lexical_newest"][0, 4] == 0 and features["unseen"][0, 4] == 0  # i0 itself: no self-overlap
    served = fuse([{"item_id": c, "title": c, "text": catalog[c], "score": float(s), "vector": vectors[position[c]]}
                   for c, s in zip(cands, content)],
                  [{"item_id": h, "title": h, "text": catalog[h], "vector": vectors[position[h]]} for h in reversed(history)],
                  signals, weights, vocabulary)
    assert np.allclose([c["score"] for c in served], expected, atol=1e-6)

    save_reranker(tmp_path, signals, weights, {"on": "test"}, vocabulary)
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    ranked = reranker.rerank([{"item_id": c, "title": c, "text": catalog[c], "score": float(s), "vector": vectors[position[c]]}
                              for c, s in zip(cands, content)], 5, [],
                             {"history": [{"item_id": h, "title": h, "text": catalog[h], "vector": vectors[position[h]]}
                                          for h in reversed(history)], "words": []})
    assert sorted(r["score"] for r in ranked) == pytest.approx(sorted(expected.tolist()), abs=1e-6)
    assert len(ranked) == 5


def test_weights_that_use_words_need_the_saved_vocabulary(tmp_path):
    signals = BehaviourSignals.fit(pd.DataFrame({"user_id": ["a"], "history": [["i0"]], "target": ["i1"]}), ITEMS)
    save_reranker(tmp_path, signals, FusionWeights(lexical_mean=0.5), {"on": "test"})
    with pytest.raises(FileNotFoundError, match="lexical"):
        load_reranker(tmp_path)


def test_row_cache_gives_the_rows_of_transform_and_follows_edited_texts():
    lexical = LexicalVectors.fit(list(TEXTS.values()))
    cache = RowCache(lexical, max_texts=4)
    batches = [["eSUN PLA filament 1.75mm red", "", "eSUN PLA filament 1.75mm red", None],
               ["Gorilla super glue gel clear", "zebra", "FlashForge Creator Pro 3D printer"],  # past max_texts: cleared
               ["eSUN PLA filament 1.75mm red", "Gorilla super glue"],  # an edited text: a new row
               []]
    for texts in batches:
        cached = cache.transform(texts)
        assert cached.shape == (len(texts), lexical.vocabulary_size)
        assert np.allclose(cached.toarray(), lexical.transform(texts).toarray())
        for query in ("red PLA filament", "nothing known"):  # the dot products the Reranker takes
            row = lexical.transform([query])
            assert np.allclose(cache.dots(row, texts), (row @ lexical.transform(texts).T).toarray()[0], atol=1e-6)
        for past in (["blue PLA filament", "Creator Pro printer", "nothing known"], ["super glue"], ["", "zebra"], []):
            expected = (lexical.transform(past) @ lexical.transform(texts).T).toarray()  # the sparse route
            assert cache.overlaps(past, texts).shape == (len(past), len(texts))
            assert np.allclose(cache.overlaps(past, texts), expected, atol=1e-6)
            assert len(past) < 2 or len(texts) < 2 or "zebra" in past or expected.any()  # not all zeros
    assert len(cache._rows) <= 4


def test_row_cache_that_fills_up_still_gives_the_texts_it_held():
    lexical = LexicalVectors.fit(list(TEXTS.values()))
    cache = RowCache(lexical, max_texts=2)
    cache.transform([TEXTS["i0"], TEXTS["i1"]])
    texts = [TEXTS["i0"], TEXTS["i2"]]  # one kept, one new: past max_texts, so the cache is cleared
    assert np.allclose(cache.transform(texts).toarray(), lexical.transform(texts).toarray())


def test_configured_word_weights_need_the_vocabulary(tmp_path):
    signals = BehaviourSignals.fit(pd.DataFrame({"user_id": ["a"], "history": [["i0"]], "target": ["i1"]}), ITEMS)
    save_reranker(tmp_path, signals, FusionWeights(behaviour=1.0), {"on": "test"})
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    with pytest.raises(ValueError, match="word-overlap"):
        reranker.reconfigure({"weights": {"lexical_max": 1.0}})
    assert reranker.weights == FusionWeights(behaviour=1.0)  # unchanged
    save_reranker(tmp_path, signals, FusionWeights(behaviour=1.0), {"on": "test"}, LexicalVectors.fit(list(TEXTS.values())))
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    reranker.reconfigure({"weights": {"lexical_max": 1.0}})
    assert reranker.weights == FusionWeights(lexical_max=1.0)


@pytest.mark.parametrize("history_texts", [["", ""], ["zebra qqq"], ["eSUN PLA filament 1.75mm red", ""], []])
@pytest.mark.parametrize("candidate_texts", [["", "zebra"], ["eSUN PLA filament 1.75mm blue", "x" * 500], []])
def test_served_reranker_takes_texts_without_known_words(tmp_path, history_texts, candidate_texts):
    """Empty texts, texts with no vocabulary word and new ids rank without an error, on both paths."""
    train = pd.DataFrame({"user_id": ["a", "b"], "history": [["i0"], ["i3"]], "target": ["i1", "i4"]})
    signals = BehaviourSignals.fit(train, ITEMS, decay=0.7, ease_lambda=1.0)
    weights = FusionWeights(behaviour=1.0, ease=0.5, sequence=0.3, unseen=0.2, feedback=0.4, newest=0.3,
                            lexical_newest=0.5, lexical_mean=0.3, lexical_max=0.2, popularity=0.1)
    save_reranker(tmp_path, signals, weights, {"on": "test"}, LexicalVectors.fit(list(TEXTS.values())),
                  text_weights=FusionWeights(query_words=1.0, behaviour=1.0), text_report={"on": "test"})
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    unit = np.ones(4, np.float32) / 2
    cands = [{"item_id": i, "title": "", "text": t, "score": 0.5 - j / 10, "vector": unit}
             for j, (i, t) in enumerate(zip(["i1", "new-1"], candidate_texts))]
    history = [{"item_id": i, "title": "", "text": t, "vector": unit} for i, t in zip(["i0", "new-2"], history_texts)]
    contexts = [{"history": history, "words": ["pla"], "text": None},
                {"history": [], "words": ["zebra"], "text": "zebra"}]  # free text alone
    answers = reranker.rerank_many([cands, cands], [{"k": 5, "exclude": [], "context": c} for c in contexts])
    for answer in answers:
        assert not isinstance(answer, BaseException), answer
        assert [a["item_id"] for a in answer] == [a["item_id"] for a in sorted(answer, key=lambda a: -a["score"])]
        assert {a["item_id"] for a in answer} == {c["item_id"] for c in cands}
        assert all(np.isfinite(a["score"]) and a["reason"] for a in answer)
