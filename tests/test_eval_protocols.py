"""Protocols on a small hand-made processed folder with timestamps and items that appear late."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coldrec.config import PipelineConfig
from coldrec.data.schema import EXAMPLE_SCHEMA, INTERACTION_SCHEMA
from coldrec.eval.cold_users import bucket_of, bucket_queries, free_text_description
from coldrec.eval.evaluate import evaluate
from coldrec.eval.examples import load_interactions, sequences
from coldrec.eval.methods import Methods
from coldrec.eval.protocols import build_protocol, run_protocols
from coldrec.eval.runner import run_methods
from coldrec.eval.time_split import cut_time
from coldrec.text import render_profile_text

TOPICS = {"pen": ["ballpoint pen blue", "gel pen black", "fountain pen", "marker pen red"],
          "paper": ["copy paper ream", "sticky notes paper", "legal pad paper", "index cards paper"],
          "chair": ["office chair mesh", "desk chair lumbar", "chair mat", "stool chair"]}
NEW = {"pen": "deluxe pen gift set", "paper": "recycled paper ream", "chair": "gaming chair leather"}
CUT_DAY = 100


def write_timed(root: Path, users: int = 30, timestamps: bool = True) -> Path:
    """Users buy 6 old items of one topic before day 100, then one item after: a new one for every 3rd user."""
    items = [(f"{t}-{i}", t, text) for t, texts in TOPICS.items() for i, text in enumerate(texts)]
    items += [(f"{t}-new", t, text) for t, text in NEW.items()]
    text = {i: f"{x}. {t}" for i, t, x in items}  # as render_item_text joins title and categories
    (root / "items").mkdir(parents=True)
    n = len(items)
    pq.write_table(pa.table({
        "item_id": [i for i, _, _ in items], "scene": ["office"] * n, "title": [x for _, _, x in items],
        "categories": [t for _, t, _ in items], "brand": [None] * n, "description": [None] * n,
        "genres": [None] * n, "year": [None] * n, "text": [f"{x}. {t}" for _, t, x in items]}), root / "items" / "p.parquet")
    inter, examples = [], {"train": [], "valid": [], "test": []}
    for u in range(users):
        topic = list(TOPICS)[u % 3]
        seq = [f"{topic}-{(u + j) % 4}" for j in range(6)] + [f"{topic}-new" if u % 3 == 0 else f"{topic}-{u % 4}"]
        days = [10 * j + u % 7 for j in range(6)] + [CUT_DAY + u % 5]
        for pos, (item, day) in enumerate(zip(seq, days)):
            inter.append({"user_id": f"u{u:02d}", "item_id": item, "timestamp": day * 86400 if timestamps else None,
                          "position": pos, "scene": "office", "rating": None})
        for t in range(1, len(seq)):
            split = "test" if t == len(seq) - 1 else "valid" if t == len(seq) - 2 else "train"
            examples[split].append({"user_id": f"u{u:02d}", "scene": "office", "history": seq[:t], "target": seq[t],
                                    "split": split, "target_text": text[seq[t]],
                                    "profile_text": render_profile_text([text[h] for h in reversed(seq[:t])])})
    (root / "interactions").mkdir()
    pq.write_table(pa.Table.from_pylist(inter, schema=INTERACTION_SCHEMA), root / "interactions" / "p.parquet")
    for split, rows in examples.items():
        (root / "examples" / split).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA), root / "examples" / split / "p.parquet")
    (root / "stats.json").write_text(json.dumps({"scene_prefix": False}))
    return root


def _cfg(tmp_path, **eval_fields) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "data": {"dataset": "generic", "scene": "office", "output_dir": str(tmp_path / "data")},
        "eval": {"ks": [5, 10], "time_quantile": 0.86, "output": str(tmp_path / "eval.json"), **eval_fields}})


@pytest.fixture()
def timed(tmp_path):
    write_timed(tmp_path / "data" / "office")
    return _cfg(tmp_path)


def test_time_split_puts_rows_on_the_right_side_and_finds_cold_targets(timed):
    inter = load_interactions(timed.data.processed_dir)
    cut = cut_time(inter, timed.eval.time_quantile)
    assert cut == CUT_DAY * 86400  # 30 of the 210 interactions lie at or after day 100
    data = build_protocol("time-split", timed)
    first = inter.groupby(["user_id", "item_id"])["timestamp"].min().to_dict()  # old items are bought again later
    last = inter.groupby(["user_id", "item_id"])["timestamp"].max().to_dict()
    assert len(data.train) == 180
    for row in data.train.itertuples():
        assert all(first[(row.user_id, i)] < cut for i in [*row.history, row.target])
    assert len(data.test) == 30
    for row in data.test.itertuples():
        assert all(first[(row.user_id, h)] < cut for h in row.history) and len(row.history) == 6
        assert last[(row.user_id, row.targets[0])] >= cut
    cold = set(data.items.loc[data.target_groups["cold"], "item_id"])
    assert cold == {"pen-new", "paper-new", "chair-new"}
    assert data.facts["first_target_cold_users"] == 10
    assert not data.valid.empty and data.tune_train["target"].isin(data.train["target"]).all()


def test_id_baselines_score_zero_on_cold_targets(timed):
    data = build_protocol("time-split", timed)
    rows = run_methods(data, Methods(timed.eval, timed.model), ["popularity", "itemknn", "ease", "bm25"], [5, 10]).rows
    value = {(r["method"], r["bucket"], r["metric"], r["k"]): r["value"] for r in rows}
    for method in ("popularity", "itemknn", "ease"):
        assert value[(method, "cold", "recall", 10)] == 0.0  # 12 known items always rank above a cold one
        assert value[(method, "cold", "mrr", None)] <= 1 / 13
        assert value[(method, "warm", "recall", 10)] > 0.0
    assert value[("bm25", "cold", "recall", 10)] > 0.0  # text finds the new item of the topic
    users = {(r["bucket"], r["users"]) for r in rows if r["method"] == "ease"}
    assert users == {("all", 30), ("warm", 20), ("cold", 10)}
    assert value[("ease", "all", "coverage", 10)] > 0 and ("ease", "all", "diversity", 10) not in value


def test_time_split_needs_timestamps(tmp_path):
    write_timed(tmp_path / "data" / "office", timestamps=False)
    cfg = _cfg(tmp_path, methods=["popularity"])
    with pytest.raises(ValueError, match="timestamps"):
        build_protocol("time-split", cfg)
    assert "time-split" not in run_protocols(cfg, protocols=["time-split", "leave-one-out"])


def test_bucket_assignment():
    assert [bucket_of(n) for n in (0, 1, 2, 3, 4, 10, 11, 50)] == ["0", "1", "2", "3", "4-10", "4-10", ">10", ">10"]
    seqs = sequences(__import__("pandas").DataFrame({"user_id": ["a"] * 13 + ["b"] * 3,
                                                     "item_id": [f"i{j}" for j in range(13)] + ["x", "y", "z"]}))
    q = bucket_queries(seqs, max_history=50)
    got = {(r.user_id, r.bucket): (list(r.history), r.targets[0]) for r in q.itertuples()}
    assert set(got) == {("a", b) for b in ("0", "1", "2", "3", "4-10", ">10")} | {("b", "0"), ("b", "1"), ("b", "2")}
    assert got[("a", "1")] == (["i11"], "i12") and got[("a", "4-10")][0] == [f"i{j}" for j in range(2, 12)]
    assert got[("a", ">10")][0] == [f"i{j}" for j in range(12)] and got[("a", "0")][0] == []
    natural = bucket_queries(seqs, max_history=50, truncate=False)
    assert sorted(natural["bucket"]) == ["0", "0", "2", ">10"]


def test_free_text_description_never_uses_the_target():
    fields = {"p1": {"title": "Blue gel pen, fine tip", "categories": None},
              "p2": {"title": "Fountain pen with ink", "categories": "Office; Pens; Fountain"},
              "t": {"title": "Secret target widget", "categories": "Widgets"}}
    text = free_text_description(["t", "p1", "p2", "t"], "t", fields)
    assert text.startswith("Looking for: ") and "widget" not in text.lower() and "secret" not in text.lower()
    # newest item first, its categories field; then the older item's title words
    assert text == "Looking for: office, pens, fountain, blue, gel, pen, fine, tip"
    fields["t"] = {"title": "something else entirely", "categories": "Pens"}
    assert free_text_description(["t", "p1", "p2", "t"], "t", fields) == text  # the target is never read
    assert free_text_description(["t"], "t", fields) == ""


def test_cold_user_protocol_buckets_and_descriptions(timed):
    data = build_protocol("cold-users", timed)
    assert set(data.test["bucket"]) == {"0", "1", "2", "3", "4-10"}  # 6 history items: no ">10"
    zero = data.test[data.test["bucket"] == "0"]
    texts = dict(zip(data.items["item_id"], data.items["text"]))
    for row in zero.itertuples():
        assert row.history == [] and row.free_text and texts[row.targets[0]] not in row.profile_text
    one = data.test[data.test["bucket"] == "1"].iloc[0]
    assert one.profile_text == texts[one.history[0]]
    rows = run_methods(data, Methods(timed.eval, timed.model), ["popularity", "itemknn", "bm25"], [5]).rows
    assert {r["bucket"] for r in rows} == {"0", "1", "2", "3", "4-10"}
    assert all(r["users"] == 30 for r in rows)


def test_fused_scores_free_text_alone_with_weights_learned_on_described_validation(timed, tiny_backbone):
    from coldrec.rank.feedback import pseudo_history
    from coldrec.rank.free_text import query_words, text_features
    from coldrec.rank.fusion import FusionWeights, fused_scores
    from coldrec.rank.lexical import LexicalVectors
    from coldrec.rank.signals import BehaviourSignals

    cfg = timed.model_copy(update={"model": timed.model.model_copy(update={"backbone": tiny_backbone})})
    data = build_protocol("cold-users", cfg)
    described = data.free_text_valid
    assert len(described) and all(h == [] for h in described["history"]) and described["free_text"].all()
    methods = Methods(cfg.eval, cfg.model)
    score = methods.build("fused", data.items, data.train, data.valid, free_text_valid=described)
    text_weights = FusionWeights(**methods.chosen["fused"]["free_text"]["chosen"])
    # Free text alone is scored by content + the text weights' features, as the Serve Reranker does.
    zero = data.test[data.test["bucket"] == "0"]
    item_ids, texts = data.items["item_id"].tolist(), data.items["text"].tolist()
    content = methods.encoder("untrained").encode_users(zero["profile_text"].tolist()) @ \
        methods.item_vectors("untrained", data.items).T
    vocabulary = LexicalVectors.fit(texts)
    signals = BehaviourSignals.fit(data.train, item_ids, ease_lambda=methods.chosen["fused"]["ease_lambda"])
    cols = signals.columns(item_ids)
    words = query_words(vocabulary.transform(zero["free_text"].tolist()), vocabulary.transform(texts))
    features = text_features(signals, cols, words, pseudo_history(signals, cols, content, words))
    assert text_weights.behaviour or text_weights.ease  # the feedback is learned here, and applied
    assert np.allclose(score(zero), fused_scores(content, features, text_weights), atol=1e-5)
    # Off: the free-text bucket gets the weights learned with histories, as before.
    off = Methods(cfg.eval.model_copy(update={"fused_free_text": False}), cfg.model)
    off.build("fused", data.items, data.train, data.valid, free_text_valid=described)
    assert "free_text" not in off.chosen["fused"]


@pytest.mark.parametrize("refit", [False, True])
def test_leave_one_out_protocol_matches_evaluate(timed, refit):
    cfg = timed.model_copy(update={"eval": timed.eval.model_copy(update={
        "methods": ["popularity", "itemknn", "bm25"], "max_users": 20, "mask_history": True,
        "refit_with_valid": refit})})
    report = evaluate(cfg)
    rows = run_protocols(cfg, protocols=["leave-one-out"])["leave-one-out"].rows
    for r in rows:
        if r["metric"] in ("recall", "ndcg", "mrr"):
            name = r["metric"] if r["k"] is None else f"{r['metric']}@{r['k']}"
            assert r["value"] == pytest.approx(report.value(r["method"], name, r["masked_history"]), abs=1e-6)
    assert {r["users"] for r in rows} == {20}


def test_every_protocol_with_the_tiny_encoder_and_cross_scene_label(timed, tiny_backbone):
    cfg = timed.model_copy(update={"model": timed.model.model_copy(update={"backbone": tiny_backbone})})
    results = run_protocols(cfg, protocols=["leave-one-out", "time-split", "cold-users"],
                            methods=["popularity", "untrained", "untrained-last-item", "finetuned"],
                            trained_on=["amazon-scientific"])
    assert set(results) == {"cross-scene", "time-split", "cold-users"}
    rows = [r for res in results.values() for r in res.rows]
    assert {r["method"] for r in rows} == {"popularity", "untrained", "untrained-last-item"}  # no model: no finetuned
    diversity = [r["value"] for r in rows if r["metric"] == "diversity"]
    assert diversity and all(0.0 <= v <= 2.0 for v in diversity)
    assert all(np.isfinite(r["value"]) for r in rows)


def test_refit_with_valid_chooses_on_train_and_scores_with_train_plus_valid(timed):
    from coldrec.data.processed import load_examples

    pdir = timed.data.processed_dir
    train, valid = load_examples(pdir, "train"), load_examples(pdir, "valid")
    plain = build_protocol("leave-one-out", timed)
    assert plain.tune_train is None and len(plain.train) == len(train)
    cfg = timed.model_copy(update={"eval": timed.eval.model_copy(update={"refit_with_valid": True})})
    data = build_protocol("leave-one-out", cfg)
    assert len(data.tune_train) == len(train) and len(data.train) == len(train) + len(valid)
    assert data.facts["refit_with_valid"] and data.test.equals(plain.test)
    # Each user's validation interaction joins the scoring fit: popularity now counts those targets.
    scores = Methods(cfg.eval, cfg.model).build("popularity", data.items, data.train, data.valid,
                                                data.tune_train)(data.test.iloc[:1])[0]
    counts = pd.concat([train, valid])["target"].value_counts()
    assert scores.tolist() == [counts.get(i, 0) for i in data.items["item_id"]]
    on_valid = timed.model_copy(update={"eval": timed.eval.model_copy(update={"refit_with_valid": True,
                                                                                "split": "valid"})})
    assert build_protocol("leave-one-out", on_valid).tune_train is None  # never fit on what is scored


def test_fused_adds_the_history_feedback_when_its_weights_use_it(timed, tiny_backbone, monkeypatch):
    # The weights are fixed here (the tiny data need not make the search choose the feedback); the
    # fused score must add the feedback as coldrec.rank.fusion.catalog_feedback computes it, which the
    # Serve Reranker matches (tests/test_feedback.py).
    from coldrec.rank import fusion
    from coldrec.rank.signals import BehaviourSignals

    cfg = timed.model_copy(update={"model": timed.model.model_copy(update={"backbone": tiny_backbone}),
                                   "eval": timed.eval.model_copy(update={"fused_feedback": True})})
    data = build_protocol("leave-one-out", cfg)
    scores = {}
    for feedback in (0.0, 2.0):
        weights = fusion.FusionWeights(behaviour=1.0, unseen=0.5, feedback=feedback)
        monkeypatch.setattr(fusion, "fit_fusion", lambda *a, w=weights, **kw: (w, {"decay": 1.0}))
        methods = Methods(cfg.eval, cfg.model)
        scores[feedback] = methods.build("fused", data.items, data.train, data.valid)(data.test)
    item_ids = data.items["item_id"].tolist()
    content = methods.encoder("untrained").encode_users(data.test["profile_text"].tolist()) @ \
        methods.item_vectors("untrained", data.items).T
    signals = BehaviourSignals.fit(data.train, item_ids, ease_lambda=methods.chosen["fused"]["ease_lambda"])
    expected = fusion.catalog_feedback(signals, signals.columns(item_ids), content, data.test["history"].tolist(),
                                       {item_id: i for i, item_id in enumerate(item_ids)})
    assert expected.any()
    assert np.allclose(scores[2.0] - scores[0.0], 2.0 * expected, atol=1e-5)
