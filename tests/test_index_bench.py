"""The index benchmark script at a tiny size: it builds Flat and the auto index and records rows."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_index_bench_records_rows(tmp_path):
    out = tmp_path / "bench"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "index_bench.py"), "--items", "4000", "--dim", "32",
                    "--exact-max-items", "500", "--queries", "100", "--batch", "50", "--root", str(out),
                    "--machine", "test machine"], check=True, capture_output=True, cwd=ROOT)
    rows = json.loads((out / "benchmarks" / "results" / "serving.json").read_text())
    assert rows and all(r["suite"] == "index" and r["benchmark"] == "index" and r["machine"] == "test machine"
                        for r in rows)
    assert all({"setting", "metric", "value", "items", "dim", "date"} <= r.keys() for r in rows)
    assert {r["items"] for r in rows} == {4000} and {r["dim"] for r in rows} == {32}
    by = {(r["role"], r["metric"]): r for r in rows}
    assert by[("Flat", "recall_at_10")]["value"] == 1.0 and by[("Flat", "qps")]["setting"] == "Flat"
    assert by[("auto", "qps")]["setting"].startswith("IVF") and "nprobe=" in by[("auto", "qps")]["setting"]
    assert 0.0 < by[("auto", "recall_at_10")]["value"] <= 1.0 and by[("auto", "qps")]["value"] > 0
    text = (out / "BENCHMARKS.md").read_text()
    assert "<!-- begin:serving-index -->" in text and "Goal (auto index" in text
