"""Behaviour signals, fusion weights learned on validation, the fit job and the Serve reranker's fusion."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from coldrec.eval.baselines import ItemKNN, user_item_matrix
from coldrec.rank.free_text import TEXT_FEATURES
from coldrec.rank.fusion import (
    FusionWeights, fused_scores, learn_weights, load_reranker, save_reranker, signal_features, signal_names,
)  # fmt: skip
from coldrec.rank.signals import BehaviourSignals
from coldrec.serve.reranker import Reranker, explain, fuse
from synthetic import TASTE_ITEMS as ITEMS, taste_examples as examples


def test_behaviour_ranks_like_item_knn_and_is_scaled_to_one():
    train = examples()
    signals = BehaviourSignals.fit(train, ITEMS, decay=0.8)
    knn = ItemKNN(train, ITEMS).scorer(decay=0.8)
    batch = pd.DataFrame({"history": [["i0", "i1"], ["i5"], ["i2", "i6", "i4"]]})
    ours, theirs = signals.behaviour(batch["history"].tolist()), knn(batch)
    seen = ~ItemKNN(train, ITEMS).unseen
    for a, b in zip(ours, theirs):  # the same order over the items both know (a positive rescaling)
        ratio = a[seen][b[seen] > 0] / b[seen][b[seen] > 0]
        assert np.allclose(ratio, ratio[0], rtol=1e-5)
    assert ours.max() <= 1.0 + 1e-6 and ours.min() >= 0.0


def test_popularity_and_freshness_of_known_and_unknown_items():
    signals = BehaviourSignals.fit(examples(), ITEMS)
    cols = signals.columns(["i0", "i7", "brand-new"])
    assert list(cols[:2]) == [0, 7] and cols[2] == -1
    pop, fresh = signals.popularity(cols), signals.freshness(cols)
    assert 0 < pop[0] <= 1 and pop[1] == 0 and pop[2] == 0
    assert list(fresh) == [0.0, 1.0, 1.0]  # no timestamps: never interacted with = new


def test_freshness_decays_with_age_when_there_are_timestamps():
    inter = pd.DataFrame({"item_id": ["i0", "i1", "i0"], "timestamp": [0, 90 * 86400, 100 * 86400]})
    signals = BehaviourSignals.fit(examples(), ITEMS, interactions=inter, half_life_days=10)
    fresh = signals.freshness(signals.columns(["i0", "i1", "i7"]))
    assert fresh[0] < fresh[1] < fresh[2] == 1.0
    assert fresh[1] == pytest.approx(0.5)  # ten days old at a ten-day half life


def test_sequence_is_the_transition_probability_from_the_newest_item():
    train = pd.DataFrame({"user_id": ["a", "b", "c"], "history": [["i0", "i1"], ["i1"], ["i2", "i1"]],
                          "target": ["i2", "i2", "i3"]})
    signals = BehaviourSignals.fit(train, ITEMS)
    seq = signals.sequence([["i5", "i1"], ["i1", "i5"], []], signals.columns(["i2", "i3", "i0"]))
    assert np.allclose(seq[0], [2 / 3, 1 / 3, 0]) and not seq[1].any() and not seq[2].any()


def test_unseen_marks_the_items_outside_the_history():
    signals = BehaviourSignals.fit(examples(), ITEMS)
    unseen = signals.unseen([["i0", "i5"], [], ["brand-new"]], signals.columns(["i0", "i1", "i5", "brand-new"]))
    assert unseen.tolist() == [[0, 1, 0, 1], [1, 1, 1, 1], [1, 1, 1, 1]]
    assert signals.unseen([["i2"]]).shape == (1, len(ITEMS)) and signals.unseen([["i2"]])[0, 2] == 0


def test_ease_feature_ranks_like_the_ease_baseline():
    from coldrec.eval.baselines import EASE

    train = examples()
    signals = BehaviourSignals.fit(train, ITEMS, ease_lambda=2.0, top_m=len(ITEMS))
    hist = [["i0", "i1"], ["i5"]]
    theirs = EASE(train, ITEMS).scorer(2.0)(pd.DataFrame({"history": hist}))
    ours = signals.ease(hist)
    for a, b in zip(ours, theirs):  # positive weights only: the same order among items EASE scores above 0
        top = b > 0
        assert np.allclose(a[top] / b[top], (a[top] / b[top])[0], rtol=1e-4)


def test_rp3_is_the_popularity_penalised_random_walk_with_rows_scaled_to_one():
    extra = pd.DataFrame({"user_id": ["z1", "z2", "z3"], "history": [["i0"], ["i0", "i2"], ["i4"]],
                          "target": ["i5", "i1", "i0"]})  # uneven: users of one, two and three items
    train = pd.concat([examples(), extra], ignore_index=True)
    assert BehaviourSignals.fit(train, ITEMS).rp3 is None  # only when asked
    signals = BehaviourSignals.fit(train, ITEMS, top_m=len(ITEMS), rp3=True)
    x = user_item_matrix(train, ITEMS).toarray().astype(np.float64)  # (users, items) 0/1
    counts = np.maximum(x.sum(axis=0), 1.0)  # i7 has none
    walk = (x / counts).T @ (x / x.sum(axis=1, keepdims=True))  # P(i -> user -> j)
    walk /= np.sqrt(counts)[None, :]  # the popularity penalty, beta 0.5
    np.fill_diagonal(walk, 0.0)
    expected = walk / np.maximum(walk.max(axis=1, keepdims=True), 1e-12)
    assert len(np.unique(np.round(expected[expected > 0], 6))) > 3  # not all ones
    assert np.allclose(signals.rp3.toarray(), expected, atol=1e-6)
    hist = [["i0", "i1"], ["i5"]]
    cols = signals.columns(ITEMS)
    features = signal_features(signals, hist, cols)
    assert np.allclose(features["rp3"], signals.history_matrix(hist).toarray() @ expected, atol=1e-6)
    assert "rp3" not in signal_features(signals, hist, cols, signal_names(rp3=False))


def test_one_request_scores_equal_its_row_of_a_batch():
    signals = BehaviourSignals.fit(examples(), ITEMS, decay=0.8, ease_lambda=1.0, rp3=True)
    hists = [["i0", "i1", "i5"], ["i6"], ["brand-new", "i2"], ["i3", "i0", "i3"]]
    cols = signals.columns(["i4", "brand-new", "i1", "i0", "i7", "i2"])
    batch = signal_features(signals, [*hists, ["i5"]], cols)  # several rows: the sparse product
    for q, hist in enumerate(hists):  # one row: the serving request's path
        one = signal_features(signals, [hist], cols)
        for name in ("behaviour", "ease", "rp3", "sequence", "unseen"):
            assert one[name].shape == (1, len(cols))
            assert np.allclose(one[name][0], batch[name][q], atol=1e-6), (name, hist)
        assert one["behaviour"][0, 1] == 0 and one["ease"][0, 1] == 0  # the unknown candidate
    assert all(batch[name].any() for name in ("behaviour", "ease", "rp3", "sequence"))


def test_signal_features_computes_only_the_names_asked_for():
    signals = BehaviourSignals.fit(examples(), ITEMS, decay=0.8, ease_lambda=1.0, rp3=True)
    hists = [["i0", "i1", "i5"], ["i6"]]
    cols = signals.columns(["i4", "brand-new", "i1", "i0"])
    every = signal_features(signals, hists, cols)
    assert list(every) == ["behaviour", "ease", "rp3", "sequence", "unseen", "popularity", "freshness"]
    for names in (["ease"], ["unseen", "behaviour"], ["freshness"], []):
        some = signal_features(signals, hists, cols, names)
        assert sorted(some) == sorted(names)
        assert all(np.array_equal(some[n], every[n]) for n in names)
    no_rp3 = BehaviourSignals.fit(examples(), ITEMS, decay=0.8)
    assert "rp3" not in signal_features(no_rp3, hists, cols, ["rp3", "behaviour"])  # not fitted: left out
    with pytest.raises(ValueError, match="unknown signal features"):
        signal_features(signals, hists, cols, ["behaviour", "newest"])


def test_table_rows_are_the_dense_block_of_the_sparse_rows_and_columns():
    signals = BehaviourSignals.fit(examples(), ITEMS, decay=0.8, ease_lambda=1.0)
    table = signals.similarity
    cols = np.array([3, -1, 0, 3, 7])  # unknown (-1): 0; a column twice
    for rows in ([0, 5, 2], [4], [1, 1], []):
        expected = table[np.asarray(rows, dtype=np.int64)][:, np.maximum(cols, 0)].toarray()
        expected[:, cols < 0] = 0
        got = signals.table_rows(table, np.asarray(rows, dtype=np.int64), cols)
        assert got.shape == (len(rows), len(cols)) and got.dtype == np.float32
        assert np.array_equal(got, expected)
    assert signals.table_rows(table, np.array([0, 5, 2]), cols).any()


def test_save_and_load_round_trip(tmp_path):
    signals = BehaviourSignals.fit(examples(), ITEMS, decay=0.5, ease_lambda=1.0, rp3=True)
    save_reranker(tmp_path, signals, FusionWeights(behaviour=0.4), {"on": "test"})
    loaded, weights, lexical, sequential, text_weights, _, _ = load_reranker(tmp_path)
    assert weights == FusionWeights(behaviour=0.4) and loaded.decay == 0.5 and loaded.item_ids == ITEMS
    assert lexical is None and text_weights is None  # saved without item texts or weights for free text
    hist = [["i0", "i2"], ["i6"]]
    assert np.allclose(loaded.behaviour(hist), signals.behaviour(hist))
    assert np.allclose(loaded.sequence(hist), signals.sequence(hist)) and signals.sequence(hist).any()
    assert np.allclose(loaded.ease(hist), signals.ease(hist)) and signals.ease(hist).any()
    assert (loaded.rp3 != signals.rp3).nnz == 0 and signals.rp3.nnz
    with pytest.raises(FileNotFoundError, match="coldrec rerank"):
        load_reranker(tmp_path / "missing")


def test_learned_weights_use_behaviour_when_it_predicts_the_target():
    rng = np.random.default_rng(0)
    queries, items = 300, 50
    targets = rng.integers(0, items, queries)
    content = rng.normal(0.5, 0.1, (queries, items)).astype(np.float32)
    content[np.arange(queries), targets] += 0.05  # content alone is weak
    behaviour = rng.uniform(0, 0.05, (queries, items)).astype(np.float32)
    behaviour[np.arange(queries), targets] += 0.05  # behaviour alone is weak too, but independent
    features = {"behaviour": behaviour, "ease": np.zeros((queries, items), np.float32),
                "sequence": np.zeros((queries, items), np.float32),
                "popularity": np.zeros(items, np.float32), "freshness": np.ones(items, np.float32)}
    weights, report = learn_weights(content, features, targets)
    assert weights.behaviour > 0 and weights == FusionWeights(behaviour=weights.behaviour)  # constants: nothing to learn
    assert report["ndcg@10"] > report["content_only_ndcg@10"]


def test_softmax_fit_weighs_features_by_how_well_they_predict_the_target():
    from coldrec.rank.fusion import softmax_weights

    rng = np.random.default_rng(0)
    queries, items = 400, 40
    targets = rng.integers(0, items, queries)
    rows = np.arange(queries)
    content = rng.normal(0.5, 0.1, (queries, items)).astype(np.float32)
    content[rows, targets] += 0.1
    behaviour = rng.uniform(0, 0.05, (queries, items)).astype(np.float32)
    behaviour[rows, targets] += 0.05
    misleading = rng.uniform(0, 1, (queries, items)).astype(np.float32)
    misleading[rows, targets] = rng.uniform(0, 0.3, queries)  # low on the target: a negative fitted weight, so 0
    features = {"behaviour": behaviour, "ease": misleading, "popularity": np.ones(items, np.float32)}
    weights = softmax_weights(content, features, pd.Series(targets).to_numpy())  # a read-only array, as pandas gives
    assert weights is not None and weights.behaviour > 0 and weights.ease == 0 and weights.popularity == 0
    # content that points away from the targets has no positive weight to divide by
    assert softmax_weights(-content, features, targets) is None


def test_fusion_search_from_the_softmax_fit_keeps_the_better_of_two_searches():
    from coldrec.rank.fusion import fit_fusion

    class Encoder:  # profile vectors: the user's newest history item's own vector
        def encode_users(self, texts, batch_size=64):
            return np.stack([vectors[int(t)] for t in texts])

    rng = np.random.default_rng(0)
    item_ids = [f"i{n}" for n in range(30)]
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = []
    for u in range(120):  # each user walks i_k -> i_(k+1): transitions predict, content does not
        start = int(rng.integers(27))
        rows.append({"user_id": f"u{u}", "history": item_ids[start : start + 2], "target": item_ids[start + 2],
                     "profile_text": str(start + 1)})
    data = pd.DataFrame(rows)
    signals = BehaviourSignals.fit(data.iloc[:80], item_ids)
    weights, report = fit_fusion(signals, Encoder(), vectors, item_ids, data.iloc[80:], (1.0,), max_users=None)
    assert set(report["searches"]) == {"from content", "from softmax fit"}
    assert report["ndcg@10"] == max(report["searches"].values()) > report["content_only_ndcg@10"]
    plain, plain_report = fit_fusion(signals, Encoder(), vectors, item_ids, data.iloc[80:], (1.0,), max_users=None,
                                     softmax_start=False)
    assert "searches" not in plain_report and plain_report["ndcg@10"] <= report["ndcg@10"]


def test_refinement_goes_between_and_past_the_grid_points():
    from coldrec.rank.fusion import FusionGrid

    queries, items = 40, 10
    targets = np.zeros(queries, dtype=int)
    content = np.zeros((queries, items), np.float32)
    content[:, 1] = np.where(np.arange(queries) < 20, 0.9, 1.8)  # a distractor the behaviour must outweigh
    behaviour = np.zeros((queries, items), np.float32)
    behaviour[:, 0] = 1.0
    grid = {"behaviour": [0.0, 1.0]}
    coarse, _ = learn_weights(content, {"behaviour": behaviour}, targets, FusionGrid(**grid, refine_rounds=0))
    fine, report = learn_weights(content, {"behaviour": behaviour}, targets, FusionGrid(**grid))
    assert coarse.behaviour == 1.0 and fine.behaviour == 2.0 and report["ndcg@10"] == 1.0


def test_serving_fusion_equals_the_evaluated_fusion():
    from coldrec.rank.fusion import content_features, history_vectors

    signals = BehaviourSignals.fit(examples(), ITEMS, decay=0.7, ease_lambda=1.0, rp3=True)
    weights = FusionWeights(behaviour=2.0, ease=1.5, rp3=0.9, sequence=0.7, unseen=0.3, newest=0.4, history_mean=0.6,
                            history_max=0.2, popularity=0.1, freshness=0.05)
    history = ["i4", "i2", "i1", "unknown"]  # oldest first; in training, i1 is followed by i2
    cands = ["i0", "i2", "i5", "i7", "brand-new"]
    rng = np.random.default_rng(1)
    content = rng.uniform(0.2, 0.8, len(cands)).astype(np.float32)
    catalog = ITEMS + ["unknown", "brand-new"]
    vectors = rng.normal(size=(len(catalog), 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    position = {item_id: i for i, item_id in enumerate(catalog)}
    cols = signals.columns(cands)
    near = content_features(history_vectors([history], vectors, position), vectors[[position[c] for c in cands]],
                            signals.decay)
    features = {**signal_features(signals, [history], cols), **near}
    assert features["sequence"].any() and features["behaviour"].any() and features["ease"].any() and features["rp3"].any()
    assert features["unseen"][0].tolist() == [1, 0, 1, 1, 1]
    expected = fused_scores(content[None], features, weights)[0]
    served = fuse([{"item_id": c, "title": c, "score": float(s), "vector": vectors[position[c]]}
                   for c, s in zip(cands, content)],
                  [{"item_id": h, "title": h.upper(), "vector": vectors[position[h]]} for h in reversed(history)],
                  signals, weights)
    assert np.allclose([c["score"] for c in served], expected, atol=1e-6)
    by_id = {c["item_id"]: c for c in served}
    assert by_id["i0"]["behaviour_source"]["item_id"] in ("i1", "i2")  # i0's neighbours are in its own group
    cosines = [float(vectors[position["brand-new"]] @ vectors[position[h]]) for h in reversed(history)]  # newest first
    recency = [0.7**age for age in range(len(cosines))]
    new_vector_terms = (0.4 * cosines[0] + 0.6 * float(np.dot(recency, cosines)) / sum(recency)
                        + 0.2 * max(cosines))  # fmt: skip
    # new: only unseen, freshness and its cosines with the history items add
    assert by_id["brand-new"]["score"] == pytest.approx(content[-1] + 0.3 + 0.05 + new_vector_terms, abs=1e-5)
    assert by_id["brand-new"]["behaviour_source"] is None


@pytest.mark.parametrize("zeroed", [("ease", "rp3"), ("behaviour", "sequence"), ("unseen", "popularity", "freshness")])
def test_served_fusion_computes_only_the_signals_it_weighs(zeroed):
    signals = BehaviourSignals.fit(examples(), ITEMS, decay=0.7, ease_lambda=1.0, rp3=True)
    weights = FusionWeights(**{"behaviour": 2.0, "ease": 1.5, "rp3": 0.9, "sequence": 0.7, "unseen": 0.3,
                               "popularity": 0.1, "freshness": 0.05, **dict.fromkeys(zeroed, 0.0)})
    history, cands = ["i4", "i2", "i1"], ["i0", "i2", "i3", "i5", "brand-new"]  # oldest first
    content = np.linspace(0.2, 0.6, len(cands), dtype=np.float32)
    every = signal_features(signals, [history], signals.columns(cands))
    assert all(np.ptp(every[name]) > 0 for name in zeroed)  # each carries something to lose
    asked: list[str] = []
    of_items = signals.of_items
    signals.of_items = lambda weighted, cols, names: asked.extend(names) or of_items(weighted, cols, names)
    unit = np.ones(4, np.float32) / 2
    served = fuse([{"item_id": c, "title": c, "score": float(s), "vector": unit} for c, s in zip(cands, content)],
                  [{"item_id": h, "title": h, "vector": unit} for h in reversed(history)], signals, weights)
    assert asked and not set(asked) & set(zeroed)
    expected = fused_scores(content[None], every, weights)[0]  # the vector features have weight 0 here
    assert np.allclose([c["score"] for c in served], expected, atol=1e-6)


def test_reranker_deployment_class_fuses_and_explains(tmp_path):
    signals = BehaviourSignals.fit(examples(), ITEMS)
    save_reranker(tmp_path, signals, FusionWeights(behaviour=5.0), {"on": "test"})
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    unit = np.ones(4, np.float32) / 2
    cands = [{"item_id": i, "title": i, "text": "", "score": 0.5, "vector": unit} for i in ("i0", "i5", "i7")]
    history = [{"item_id": "i1", "title": "First", "vector": unit}]
    ranked = reranker.rerank(cands, 3, [], {"history": history, "words": []})
    assert ranked[0]["item_id"] == "i0" and ranked[0]["reason"] == "often chosen with 'First'"
    assert ranked[0]["score"] > 0.5 and ranked[-1]["score"] == pytest.approx(0.5)
    reranker.reconfigure({"weights": {"behaviour": 0.0}})
    assert [r["score"] for r in reranker.rerank(cands, 3, [], {"history": history})] == [0.5, 0.5, 0.5]


def test_explain_reads_an_edited_items_words_again():
    # Item words are kept per text (reranker._words_of): an item whose text a PUT changed matches its new words.
    item = {"item_id": "k1", "title": "Keyboard", "text": "quiet mechanical switches"}
    assert explain(item, [], ["quiet", "office"]) == "matches 'quiet'"
    assert explain({**item, "text": "office keyboard, loud"}, [], ["quiet", "office"]) == "matches 'office'"


def test_reranker_ranks_free_text_alone_by_content(tmp_path):
    # Learned item priors are weighed against history features; with no history they are all that
    # is left, and a large popularity weight would put popular items above the words' best match.
    signals = BehaviourSignals.fit(examples(), ITEMS)
    save_reranker(tmp_path, signals, FusionWeights(behaviour=5.0, popularity=10.0, freshness=1.0), {"on": "test"})
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    unit = np.ones(4, np.float32) / 2
    popular = int(np.argmax(signals.counts))
    cands = [{"item_id": item, "title": item, "text": "", "score": score, "vector": unit}
             for item, score in (("brand-new", 0.9), (ITEMS[popular], 0.5))]
    ranked = reranker.rerank(cands, 2, [], {"history": [], "words": ["keyboard"]})
    assert [r["item_id"] for r in ranked] == ["brand-new", ITEMS[popular]]
    assert [r["score"] for r in ranked] == pytest.approx([0.9, 0.5])
    # With a history the learned weights apply, popularity included.
    history = [{"item_id": ITEMS[0], "title": "First", "vector": unit}]
    with_history = reranker.rerank(cands, 2, [], {"history": history, "words": []})
    assert with_history[0]["item_id"] == ITEMS[popular]


def test_fit_reranker_job_writes_what_the_app_loads(tmp_path, tiny_backbone):
    from synthetic import write_processed

    from coldrec.config import PipelineConfig
    from coldrec.data.processed import load_items
    from coldrec.index.item_index import ItemIndex, write_latest
    from coldrec.model.encoder import TextEncoder
    from coldrec.rank.job import fit_reranker
    from coldrec.serve.app import _reranker_dir

    pdir = write_processed(tmp_path / "data" / "office")
    cfg = PipelineConfig.model_validate({
        "data": {"dataset": "generic", "scene": "office", "output_dir": str(tmp_path / "data")},
        "model": {"backbone": tiny_backbone}, "index": {"output_dir": str(tmp_path / "index")},
    })  # fmt: skip
    items = load_items(pdir)
    encoder = TextEncoder.load(tiny_backbone, device="cpu")
    meta = {"model_path": tiny_backbone, "model_version": encoder.version, "scene": "office"}
    index = ItemIndex.build(items[["item_id", "text"]], encoder.encode_items(items["text"].tolist()), "Flat", meta)
    version_dir = index.save(tmp_path / "index" / "office" / "v1")
    assert _reranker_dir(None, version_dir) is None  # nothing fitted yet: content only
    write_latest(version_dir)

    out = fit_reranker(cfg)  # the scene's LATEST
    assert out == version_dir / "rerank"
    signals, weights, lexical, sequential, text_weights, text_feedback, feedback = load_reranker(out)
    assert sorted(signals.item_ids) == sorted(items["item_id"])
    assert lexical is not None and lexical.vocabulary_size > 0  # fitted on the index's item texts
    assert text_weights is not None  # learned on validation examples described in words
    assert text_feedback == {"items": 10, "temperature": 0.1, "words": 1.0}  # what they were learned with
    assert feedback == {"items": 10, "temperature": 0.1}  # eval.fused_feedback is on by default
    assert _reranker_dir(None, version_dir) == str(version_dir / "rerank")
    assert _reranker_dir("none", version_dir) is None
    with pytest.raises(ValueError, match="coldrec rerank"):
        _reranker_dir(str(tmp_path), version_dir)
    # Users stay within a topic, so co-occurrence predicts targets and the weights use it. Item
    # co-occurrence and EASE carry the same signal here; which one the search favours is a tie.
    assert weights.behaviour + weights.ease > 0
    # The weights were chosen with signals fit on train; the saved ones know every split's interactions.
    from coldrec.data.processed import load_examples

    known = pd.concat([load_examples(pdir, s) for s in ("train", "valid", "test")])
    pairs = {name: user_item_matrix(df, signals.item_ids).sum() for name, df in
             (("known", known), ("train", load_examples(pdir, "train")))}
    assert signals.counts.sum() == pairs["known"] > pairs["train"]
    report = json.loads((out / "weights.json").read_text())["report"]
    assert report["signal_examples"] == len(known) > report["tune_examples"]
    assert report["ndcg@10"] > report["content_only_ndcg@10"]
    saved = json.loads((out / "weights.json").read_text())
    assert saved["text_weights"] == text_weights.model_dump() and saved["text_report"]["queries"] > 0
    # Only what free text alone has can carry weight: the words' overlap and the item priors.
    assert not any(v for k, v in saved["text_weights"].items() if k not in TEXT_FEATURES)


def test_content_features_use_the_newest_items_and_leave_empty_histories_at_zero():
    from coldrec.rank.fusion import HISTORY_MAX_ITEMS, content_features, history_vectors

    eye = np.eye(8, dtype=np.float32)  # item i's vector is the unit vector e_i
    position = {f"i{i}": i for i in range(8)}
    old_to_new = [f"i{i}" for i in range(7)]  # i6 is the newest; i0 and i1 are past the newest five
    near = content_features(history_vectors([old_to_new, ["gone"], []], eye, position), eye, decay=0.5)
    assert near["newest"][0].tolist() == [0, 0, 0, 0, 0, 0, 1, 0]
    assert (near["history_max"][0] == [0, 0, 1, 1, 1, 1, 1, 0]).all() and HISTORY_MAX_ITEMS == 5
    weights = 0.5 ** np.arange(7)[::-1]  # i6: 1, i5: 0.5, ... i0: 1/64
    assert np.allclose(near["history_mean"][0], np.append(weights / weights.sum(), 0.0))
    for name in ("newest", "history_mean", "history_max"):
        assert not near[name][1:].any()  # no catalog item in the history: nothing to compare with
