import numpy as np
import pytest

from coldrec.config import PipelineConfig
from coldrec.eval.evaluate import evaluate
from coldrec.eval.metrics import rank_metrics, target_ranks
from coldrec.model.backbone import load_backbone
from coldrec.model.checkpoint import EncoderSettings, save_checkpoint
from synthetic import write_processed


def test_rank_metrics_by_hand():
    m = rank_metrics(np.array([0, 1, 9, 10, 60]), [10, 50])
    assert m["recall@10"] == pytest.approx(3 / 5)
    assert m["recall@50"] == pytest.approx(4 / 5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)
    assert m["mrr"] == pytest.approx(np.mean([1, 1 / 2, 1 / 10, 1 / 11, 1 / 61]))


def test_ties_do_not_favour_the_target():
    scores = np.zeros((1, 5), dtype=np.float32)  # every item tied
    tie_order = np.array([4, 3, 2, 1, 0])
    assert target_ranks(scores, np.array([0]), tie_order)[0] == 4
    assert target_ranks(scores, np.array([4]), tie_order)[0] == 0


def test_evaluate_runs_every_method_on_the_same_users(tmp_path, tiny_backbone):
    write_processed(tmp_path / "data" / "office")
    tokenizer, backbone = load_backbone(tiny_backbone)
    ckpt = save_checkpoint(backbone, tokenizer, EncoderSettings(backbone=tiny_backbone), tmp_path / "model")
    cfg = PipelineConfig.model_validate({
        "data": {"dataset": "generic", "scene": "office", "output_dir": str(tmp_path / "data")},
        "model": {"backbone": tiny_backbone},
        "eval": {"mask_history": True, "output": str(tmp_path / "eval.json"),
                 "methods": ["popularity", "untrained-last-item", "untrained", "finetuned"]},
    })
    report = evaluate(cfg, model_path=str(ckpt))
    assert report.users == 24 and report.items == 12
    assert (tmp_path / "eval.json").exists()
    for method in ("popularity", "untrained", "untrained-last-item", "finetuned"):
        for masked in (False, True):
            for k in (10, 50):
                value = report.value(method, f"recall@{k}", masked)
                assert 0.0 <= value <= 1.0
    # 12 items: everything is inside the top 50
    assert report.value("popularity", "recall@50") == 1.0
    assert "popularity" in report.table()


def test_evaluate_without_model_says_what_to_do(tmp_path, tiny_backbone):
    write_processed(tmp_path / "data" / "office")
    cfg = PipelineConfig.model_validate({
        "data": {"dataset": "generic", "scene": "office", "output_dir": str(tmp_path / "data")},
        "model": {"backbone": tiny_backbone},
        "eval": {"output": str(tmp_path / "eval.json"), "methods": ["finetuned"]},
    })
    with pytest.raises(FileNotFoundError, match="coldrec train"):
        evaluate(cfg, model_path=str(tmp_path / "missing"))
