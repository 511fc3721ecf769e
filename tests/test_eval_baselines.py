import numpy as np
import pandas as pd
import pytest
from rank_bm25 import BM25Okapi

from coldrec.config import EvalConfig, ModelConfig, PipelineConfig
from coldrec.eval.baselines import BM25, EASE, ItemKNN, history_weights, tokenize, user_item_matrix
from coldrec.eval.evaluate import evaluate
from coldrec.eval.methods import Methods, choose
from coldrec.eval.metrics import target_ranks
from synthetic import write_processed

ITEMS = ["a", "b", "c", "d", "e", "cold"]


def _train(baskets: list[list[str]]) -> pd.DataFrame:
    """One training row per user: all but the last item as history, the last as target."""
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(len(baskets))],
                         "history": [b[:-1] for b in baskets], "target": [b[-1] for b in baskets]})


def _query(*histories: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"history": list(histories), "profile_text": [" ".join(h) for h in histories]})


TRAIN = _train([["a", "b"], ["b", "a"], ["a", "b", "c"], ["c", "d"], ["d", "c"], ["e", "d"]])


def test_user_item_matrix_and_history_weights():
    x = user_item_matrix(TRAIN, ITEMS).toarray()
    assert x.shape == (6, 6) and x[:, 5].sum() == 0 and x[2].tolist() == [1, 1, 1, 0, 0, 0]
    w = history_weights([["a", "b", "a"]], {i: n for n, i in enumerate(ITEMS)}, 6, decay=0.5)
    assert w[0, :2].tolist() == [1.0, 0.5]  # "a" is newest, "b" one step older


def test_itemknn_recommends_the_co_occurring_item_and_never_a_cold_one():
    scores = ItemKNN(TRAIN, ITEMS).scorer(decay=0.8)(_query(["a"], ["d"]))
    assert np.argmax(scores[0]) == ITEMS.index("b")
    assert np.argmax(scores[1]) == ITEMS.index("c")
    assert np.isneginf(scores[:, ITEMS.index("cold")]).all()
    rank = target_ranks(scores, np.array([5, 5]), np.arange(6))  # cold item: after every known item
    assert rank.tolist() == [5, 5]


def test_ease_reproduces_a_block_pattern():
    ease = EASE(TRAIN, ITEMS)
    b = ease.weights(1.0)
    assert np.allclose(np.diag(b), 0.0)
    scores = ease.scorer(1.0)(_query(["a"], ["c", "d"], []))
    assert np.argmax(scores[0]) == ITEMS.index("b")
    assert scores[1, ITEMS.index("e")] > scores[1, ITEMS.index("a")]  # e co-occurs with d, a never does
    assert np.isneginf(scores[:, ITEMS.index("cold")]).all()
    assert np.all(scores[2, :5] == 0)  # no history: nothing known to score with


def test_ease_equals_per_column_ridge_regression():
    # EASE's closed form is, column by column, ridge regression of item j on every other item.
    x = user_item_matrix(TRAIN, ITEMS).toarray().astype(np.float64)[:, :5]
    b = EASE(TRAIN, ITEMS[:5]).weights(2.0)
    for j in range(5):
        others = [i for i in range(5) if i != j]
        xo = x[:, others]
        ridge = np.linalg.solve(xo.T @ xo + 2.0 * np.eye(4), xo.T @ x[:, j])
        assert np.allclose(b[others, j], ridge, atol=1e-5)


def test_bm25_matches_words_and_rank_bm25():
    texts = ["blue ballpoint pen", "copy paper ream", "office chair mesh", "red pen marker", "Pen pen PEN"]
    bm = BM25(texts)
    reference = BM25Okapi([tokenize(t) for t in texts])
    for query in ("pen", "paper for the copier", "mesh chair pen pen"):
        assert np.allclose(bm.scores(query), reference.get_scores(tokenize(query)))
    scores = bm.scorer()(pd.DataFrame({"profile_text": ["mesh chair", "ream of paper", ""]}))
    assert np.argmax(scores[0]) == 2 and np.argmax(scores[1]) == 1 and np.all(scores[2] == 0)


def test_choose_uses_validation_and_falls_back_to_the_middle():
    cfg = EvalConfig()
    valid = _train([["a", "b"], ["c", "d"]])
    built = []

    def build(value: float):
        built.append(value)
        good = value == 0.5
        return lambda batch: np.tile(np.array([0, 1, 0, 1, 0, 0] if good else [1, 0, 1, 0, 1, 1], np.float32),
                                     (len(batch), 1))

    _, info = choose(build, [1.0, 0.5, 2.0], valid, ITEMS, cfg)
    assert info["chosen"] == 0.5 and set(info["grid"]) == {1.0, 0.5, 2.0}
    _, info = choose(build, [1.0, 0.5, 2.0], None, ITEMS, cfg)
    assert info["chosen"] == 0.5 and "middle" in info["on"]


def test_methods_factory_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown method"):
        Methods(EvalConfig(), ModelConfig()).build("svd", pd.DataFrame({"item_id": ITEMS, "text": ITEMS}), TRAIN)


def test_evaluate_runs_the_baselines(tmp_path):
    write_processed(tmp_path / "data" / "office")
    cfg = PipelineConfig.model_validate({
        "data": {"dataset": "generic", "scene": "office", "output_dir": str(tmp_path / "data")},
        "eval": {"mask_history": True, "ks": [3, 10], "output": str(tmp_path / "eval.json"),
                 "methods": ["popularity", "itemknn", "ease", "bm25"]},
    })
    report = evaluate(cfg)
    for method in ("itemknn", "ease", "bm25"):
        for masked in (False, True):
            assert 0.0 <= report.value(method, "recall@3", masked) <= 1.0
    # users stay inside one topic of 4 items: co-occurrence finds it, popularity cannot
    assert report.value("itemknn", "recall@3") > report.value("popularity", "recall@3")
