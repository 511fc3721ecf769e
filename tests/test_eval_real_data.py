"""The protocols on the real amazon-office data (slow: preprocessing plus a few hundred users)."""

import pytest

from coldrec.config import PipelineConfig
from coldrec.data.preprocess import preprocess
from coldrec.eval.methods import Methods
from coldrec.eval.protocols import build_protocol
from coldrec.eval.runner import run_methods


@pytest.mark.slow
def test_office_time_split_and_cold_users(tmp_path, ray_session, datasets_dir):
    cfg = PipelineConfig.model_validate({
        "data": {"dataset": "amazon-office", "path": str(datasets_dir / "amazon-office"),
                 "output_dir": str(tmp_path / "data")},
        "eval": {"max_users": 300, "ks": [10]}})
    preprocess(cfg.data)
    data = build_protocol("time-split", cfg)
    assert data.facts["cold_items"] > 0 and data.facts["first_target_cold_users"] > 0
    rows = run_methods(data, Methods(cfg.eval, cfg.model), ["popularity", "itemknn", "ease", "bm25"], [10]).rows
    value = {(r["method"], r["bucket"], r["metric"], r["k"]): r["value"] for r in rows}
    for method in ("popularity", "itemknn", "ease"):
        assert value[(method, "cold", "recall", 10)] == 0.0
    buckets = build_protocol("cold-users", cfg)
    assert set(buckets.test["bucket"]) == {"0", "1", "2", "3", "4-10", ">10"}
    texts = dict(zip(buckets.items["item_id"], buckets.items["text"]))
    zero = buckets.test[buckets.test["bucket"] == "0"]
    assert all(texts[t[0]] not in p for t, p in zip(zero["targets"], zero["profile_text"]))
