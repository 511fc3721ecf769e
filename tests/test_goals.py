"""The cold-start goal checks read recorded rows and fail when a goal fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from coldrec.eval.goals import cold_item_checks, cold_user_checks

ROOT = Path(__file__).resolve().parents[1]


def _row(protocol, bucket, method, metric, value, dataset="office"):
    return {"dataset": dataset, "protocol": protocol, "bucket": bucket, "method": method, "metric": metric, "k": 10,
            "value": value, "masked_history": False, "machine": "m", "date": "2026-01-01"}


def _rows(cold=0.09, knn_cold=0.0, fused_bucket=0.05):
    rows = [_row("time-split", "warm", "fused", "recall", 0.1), _row("time-split", "cold", "fused", "recall", cold)]
    rows += [_row("time-split", "cold", m, "recall", knn_cold if m == "itemknn" else 0.0) for m in ("popularity", "itemknn", "ease")]
    for bucket in ("0", "1"):
        for metric in ("ndcg", "recall"):
            rows += [_row("cold-users", bucket, "fused", metric, fused_bucket), _row("cold-users", bucket, "popularity", metric, 0.02),
                     _row("cold-users", bucket, "itemknn", metric, 0.03)]
    return rows


def test_goals_met_and_not_met():
    assert [c["goal_met"] for c in cold_item_checks(_rows())] == [True]
    assert [c["ratio"] for c in cold_item_checks(_rows())] == [0.9]
    assert [c["goal_met"] for c in cold_item_checks(_rows(cold=0.07))] == [False]  # 0.7 x warm
    assert [c["goal_met"] for c in cold_item_checks(_rows(knn_cold=0.01))] == [False]  # an ID baseline found a cold item
    assert all(c["goal_met"] for c in cold_user_checks(_rows()))
    assert not any(c["goal_met"] for c in cold_user_checks(_rows(fused_bucket=0.035)))  # under 2 x popularity
    assert [c["bucket"] for c in cold_user_checks(_rows())] == ["0", "1"]


def test_script_records_the_checks(tmp_path):
    results = tmp_path / "rows.json"
    results.write_text(json.dumps(_rows()))
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cold_start_goals.py"), "--results", str(results),
                    "--name", "goals", "--root", str(tmp_path)], check=True, capture_output=True, cwd=ROOT)
    recorded = json.loads((tmp_path / "benchmarks" / "results" / "goals.json").read_text())
    assert len(recorded) == 1 + 4 and all(r["goal_met"] and r["machine"] == "m" for r in recorded)
    assert "every dataset and bucket: **met**" in (tmp_path / "BENCHMARKS.md").read_text()
