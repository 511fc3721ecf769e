"""SASRec as the fused reranker's ``sasrec`` feature: it learns what comes next, scores in [0, 1],
survives save and load, and is served exactly as it is evaluated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coldrec.config import SequentialConfig
from coldrec.rank.fusion import FusionWeights, fused_scores, load_reranker, save_reranker, signal_features
from coldrec.rank.sequential import SequentialSignal, training_sequences
from coldrec.rank.signals import BehaviourSignals
from coldrec.serve.reranker import Reranker, fuse

ITEMS = [f"i{n}" for n in range(12)]
SMALL = SequentialConfig(dim=16, layers=1, heads=1, max_len=8, dropout=0.0, epochs=80, batch_size=32, lr=5e-3,
                         eval_every=10, patience=3)


def cyclic(users: int, length: int, seed: int) -> pd.DataFrame:
    """Every user walks i_k -> i_(k+1 mod 12) from a random start: the next item is always known.
    Examples as the processed data holds them: one per target, the history before it."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        start = int(rng.integers(len(ITEMS)))
        seq = [ITEMS[(start + s) % len(ITEMS)] for s in range(length)]
        rows += [{"user_id": f"{seed}-{u}", "history": seq[:t], "target": seq[t]} for t in range(1, length)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fitted() -> SequentialSignal:
    valid = cyclic(20, 6, seed=1).groupby("user_id").tail(1)
    return SequentialSignal.fit(cyclic(60, 6, seed=0), ITEMS, SMALL, valid)


def test_training_sequences_are_each_users_whole_sequence():
    train = cyclic(3, 5, seed=0)
    position = {item_id: i for i, item_id in enumerate(ITEMS)}
    sequences = training_sequences(train, position)
    assert len(sequences) == 3 and all(len(s) == 5 for s in sequences)
    assert all((b - a) % len(ITEMS) == 1 for s in sequences for a, b in zip(s, s[1:]))  # ids are positions + 1


def test_it_learns_what_comes_next_and_keeps_the_best_validated_epoch(fitted):
    scores = fitted.scores([["i3", "i4"], ["i10", "i11"]])
    assert scores.shape == (2, len(ITEMS))
    assert ITEMS[int(np.argmax(scores[0]))] == "i5" and ITEMS[int(np.argmax(scores[1]))] == "i0"
    report = fitted.report
    assert report["sequences"] == 60 and report["best_epoch"] % SMALL.eval_every == 0
    best = max(check["ndcg@10"] for check in report["validation"])
    assert best > 0.9 and {"epoch": report["best_epoch"]}.items() <= next(
        c for c in report["validation"] if c["ndcg@10"] == best).items()


def test_scores_are_relative_probabilities_and_zero_for_what_it_does_not_know(fitted):
    scores = fitted.scores([["i2", "i3"], ["unknown"], []], fitted.columns(["i4", "i0", "brand-new"]))
    assert scores.shape == (3, 3)
    assert scores[0, 0] == 1.0 and 0 <= scores[0, 1] < 1.0  # i4 follows i3: the most likely item
    assert scores[0, 2] == 0  # an item added after the fit
    assert not scores[1:].any()  # no history item it knows
    full = fitted.scores([["i3"]])
    assert full.max() == 1.0 and full.min() >= 0
    logp = fitted.log_probs([["i3"]])
    assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-4)


def test_save_and_load_give_the_same_scores(tmp_path, fitted):
    fitted.save(tmp_path)
    loaded = SequentialSignal.load(tmp_path)
    assert loaded.item_ids == fitted.item_ids and loaded.cfg == fitted.cfg
    histories = [["i1", "i2"], ["i7"]]
    assert np.allclose(loaded.scores(histories), fitted.scores(histories), atol=1e-6)


def test_served_sasrec_feature_equals_the_evaluated_one(tmp_path, fitted):
    train = cyclic(60, 6, seed=0)
    signals = BehaviourSignals.fit(train, ITEMS, decay=0.8)
    weights = FusionWeights(behaviour=0.5, sasrec=0.7, unseen=0.1)
    history = ["i6", "unknown", "i7"]  # oldest first
    cands = ["i8", "i2", "i7", "brand-new"]
    content = np.array([0.3, 0.6, 0.5, 0.4], dtype=np.float32)
    features = {**signal_features(signals, [history], signals.columns(cands)),
                "sasrec": fitted.scores([history], fitted.columns(cands))}
    expected = fused_scores(content[None], features, weights)[0]
    assert features["sasrec"][0, 0] > 0.9 and features["sasrec"][0, 3] == 0
    vector = np.ones(4, np.float32) / 2
    candidates = [{"item_id": c, "title": c, "text": "", "score": float(s), "vector": vector}
                  for c, s in zip(cands, content)]
    past = [{"item_id": h, "title": h, "text": "", "vector": vector} for h in reversed(history)]
    served = fuse(candidates, past, signals, weights, sequential=fitted)
    assert np.allclose([c["score"] for c in served], expected, atol=1e-6)
    assert served[0]["behaviour_source"]["item_id"] == "i7"  # what follows the newest item carried it

    save_reranker(tmp_path, signals, weights, {"on": "test"}, sequential=fitted)
    assert load_reranker(tmp_path).sequential is not None
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    ranked = reranker.rerank(candidates, 4, [], {"history": past, "words": []})
    assert ranked[0]["item_id"] == "i8" and ranked[0]["reason"] == "often chosen with 'i7'"
    assert sorted(r["score"] for r in ranked) == pytest.approx(sorted(expected.tolist()), abs=1e-6)


def test_weights_that_use_sasrec_need_the_saved_model(tmp_path):
    signals = BehaviourSignals.fit(cyclic(5, 4, seed=0), ITEMS)
    save_reranker(tmp_path, signals, FusionWeights(sasrec=0.5), {"on": "test"})
    with pytest.raises(FileNotFoundError, match="sasrec"):
        load_reranker(tmp_path)
    save_reranker(tmp_path, signals, FusionWeights(behaviour=0.5), {"on": "test"})
    reranker = Reranker.func_or_class(reranker_dir=str(tmp_path))
    with pytest.raises(ValueError, match="sasrec"):
        reranker.reconfigure({"weights": {"sasrec": 0.5}})


def test_fit_reranker_job_fits_sasrec_when_asked(tmp_path, tiny_backbone, monkeypatch):
    from synthetic import write_processed

    import coldrec.rank.job as job

    from coldrec.config import PipelineConfig
    from coldrec.data.processed import load_items
    from coldrec.index.item_index import ItemIndex, write_latest
    from coldrec.model.encoder import TextEncoder
    from coldrec.rank.job import fit_reranker

    pdir = write_processed(tmp_path / "data" / "office")
    cfg = PipelineConfig.model_validate({
        "data": {"dataset": "generic", "scene": "office", "output_dir": str(tmp_path / "data")},
        "model": {"backbone": tiny_backbone}, "index": {"output_dir": str(tmp_path / "index")},
        "eval": {"fused_sequential": True, "sequential": {**SMALL.model_dump(), "epochs": 10, "eval_every": 5}},  # short
    })  # fmt: skip
    items = load_items(pdir)
    encoder = TextEncoder.load(tiny_backbone, device="cpu")
    meta = {"model_path": tiny_backbone, "model_version": encoder.version, "scene": "office"}
    index = ItemIndex.build(items[["item_id", "text"]], encoder.encode_items(items["text"].tolist()), "Flat", meta)
    write_latest(index.save(tmp_path / "index" / "office" / "v1"))

    real = job.fit_fusion

    def fit_fusion(*args, **kwargs):  # validation gives SASRec weight (on this tiny data it may not)
        weights, report = real(*args, **kwargs)
        assert kwargs["sequential"] is not None
        return weights.model_copy(update={"sasrec": 0.5}), report

    monkeypatch.setattr(job, "fit_fusion", fit_fusion)
    out = fit_reranker(cfg)
    saved = load_reranker(out)
    import json

    report = json.loads((out / "weights.json").read_text())["report"]
    assert report["sasrec"]["best_epoch"] in (5, 10)  # a validated epoch
    # Refit on every split's sequences for as many epochs as validation chose, with none left to stop on.
    assert saved.weights.sasrec == 0.5 and saved.sequential is not None
    assert saved.sequential.report["epochs_run"] == report["sasrec"]["best_epoch"]
    assert saved.sequential.report["validation"] == []
