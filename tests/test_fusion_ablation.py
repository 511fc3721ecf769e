"""benchmarks/fusion_ablation.py: its user-kNN feature, and one tiny run end to end."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_user_knn_averages_the_nearest_other_users_and_never_the_user_itself():
    from fusion_ablation import user_knn

    train = pd.DataFrame({"user_id": ["a", "a", "b", "c", "d"], "history": [[], ["1"], ["1"], ["2"], ["4"]],
                          "target": ["1", "2", "3", "3", "4"]})
    queries = pd.DataFrame({"user_id": ["a", "new"], "history": [["1", "2"], ["4"]]})
    scores = user_knn(train, ["1", "2", "3", "4"], queries, neighbours=1)
    # a's own set {1, 2} would be its nearest user; b {1, 3} and c {2, 3} tie next and are both kept.
    np.testing.assert_allclose(scores[0], [0.5, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(scores[1], [0.0, 0.0, 0.0, 1.0])  # a user training never saw: d alone


def test_ablation_records_every_variant_on_held_out_validation_users(tmp_path, tiny_backbone):
    from synthetic import write_processed

    write_processed(tmp_path / "data" / "office", users=40)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"dataset": "generic", "scene": "office", "output_dir": str(tmp_path / "data")},
        "model": {"backbone": tiny_backbone}, "eval": {"ease_lambdas": [10.0], "itemknn_decays": [1.0]},
    }))  # fmt: skip
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fusion_ablation.py"), "--config", str(config),
                           "--tune-users", "25", "--repeats", "2", "--user-knn", "3", "--candidates", "10",
                           "--root", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "benchmarks" / "results" / "fusion-ablation.json").read_text())
    variants = {r["variant"] for r in rows}
    assert {"content", "linear, coordinate ascent (shipped)", "linear, coordinate ascent, no word overlap",
            "linear, coordinate ascent, no feedback", "linear, softmax cross-entropy",  # feedback is on by default
            "linear, coordinate ascent, with RP3beta",  # and RP3beta off
            "linear, softmax cross-entropy + user-kNN (3)"} <= variants
    assert ("LightGBM lambdarank, top-10" in variants) == (importlib.util.find_spec("lightgbm") is not None)
    assert {r["repeat"] for r in rows} == {0, 1}
    assert all(r["tune_users"] == 25 and r["heldout_users"] == 15 for r in rows)
    assert all(0.0 <= r["value"] <= 1.0 for r in rows) and {r["metric"] for r in rows} == {"ndcg@10", "recall@10"}
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "<!-- begin:fusion-ablation -->" in text and "| linear, coordinate ascent (shipped) |" in text


def test_top_metrics_count_a_target_outside_the_candidates_as_a_miss():
    from fusion_ablation import top_metrics

    labels = np.array([[0.0, 1.0], [0.0, 0.0]])  # the second query's target is not among its candidates
    m = top_metrics(np.array([[0.9, 0.1], [0.5, 0.4]]), labels)
    assert m["recall@10"] == 0.5 and m["ndcg@10"] == pytest.approx(0.5 / np.log2(3))
