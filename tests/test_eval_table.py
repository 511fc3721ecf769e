import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coldrec.eval.table import compare_methods, load_table_config, markdown, run_quality_table
from test_eval_protocols import write_timed

ROOT = Path(__file__).resolve().parents[1]


def _write_configs(tmp_path: Path, tiny_backbone: str) -> Path:
    write_timed(tmp_path / "data" / "office")
    pipeline = {"data": {"dataset": "generic", "scene": "office", "output_dir": str(tmp_path / "data")},
                "model": {"backbone": tiny_backbone},
                "eval": {"ks": [5, 10], "time_quantile": 0.86, "mask_history": True,
                         "protocols": ["leave-one-out", "time-split", "cold-users"]}}
    (tmp_path / "office.yaml").write_text(yaml.safe_dump(pipeline))
    table = {"overrides": ["eval.max_users=20"],
             "runs": [{"config": str(tmp_path / "office.yaml"), "model": None,
                       "methods": ["popularity", "ease", "bm25", "untrained"]}]}
    (tmp_path / "table.yaml").write_text(yaml.safe_dump(table))
    return tmp_path / "table.yaml"


def test_quality_table_rows_and_markdown(tmp_path, tiny_backbone):
    rows, notes = run_quality_table(load_table_config(_write_configs(tmp_path, tiny_backbone)))
    assert {(r["protocol"], r.get("bucket")) for r in rows} >= {
        ("leave-one-out", None), ("time-split", "all"), ("time-split", "cold"), ("cold-users", "0"), ("cold-users", "4-10")}
    for r in rows:
        assert {"dataset", "protocol", "method", "metric", "k", "value"} <= set(r)
    assert {r["users"] for r in rows if r["protocol"] == "leave-one-out"} == {20}
    assert {r["masked_history"] for r in rows} == {False, True}
    text = markdown(rows, notes)
    assert "### office / time-split" in text and "| cold | ease |" in text and "diversity@10" in text
    assert "chosen on validation: {'ease'" in text and "| ease (masked) |" in text


def test_table_config_rejects_unknown_methods(tmp_path):
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"runs": [{"config": "x.yaml", "methods": ["svd"]}]}))
    with pytest.raises(ValueError, match="unknown method"):
        load_table_config(tmp_path / "t.yaml")


def test_benchmark_job_records_rows(tmp_path, tiny_backbone):
    table = _write_configs(tmp_path, tiny_backbone)
    out = tmp_path / "bench"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality_table.py"), "--config", str(table),
                    "--root", str(out), "--machine", "test machine", "eval.protocols=[leave-one-out]"],
                   check=True, capture_output=True, cwd=ROOT)
    rows = json.loads((out / "benchmarks" / "results" / "quality.json").read_text())
    assert rows and all(r["machine"] == "test machine" and r["date"] for r in rows)
    assert "<!-- begin:quality -->" in (out / "BENCHMARKS.md").read_text()


def test_labelled_runs_compare_in_one_diversity_space(tmp_path, tiny_backbone):
    """Two runs of one dataset with different labels: rows stay apart, diversity uses one space, and
    compare_models.py records other / base per dataset."""
    table = yaml.safe_load(_write_configs(tmp_path, tiny_backbone).read_text())
    run = {"config": table["runs"][0]["config"], "model": tiny_backbone, "protocols": ["leave-one-out"]}
    table["runs"] = [{**run, "label": "single", "methods": ["popularity", "finetuned"]},
                     {**run, "label": "joint", "methods": ["finetuned"]}]
    (tmp_path / "labelled.yaml").write_text(yaml.safe_dump(table))
    rows, notes = run_quality_table(load_table_config(tmp_path / "labelled.yaml"))
    assert {r["method"] for r in rows} == {"popularity", "finetuned:single", "finetuned:joint"}
    text = markdown(rows, notes)  # each run's facts line says whose it is
    assert "\nFacts (single): " in text and "\nFacts (joint): " in text
    diversity = {r["method"]: r["value"] for r in rows
                 if r["metric"] == "diversity" and r["k"] == 10 and not r["masked_history"]}
    assert diversity["finetuned:single"] == pytest.approx(diversity["finetuned:joint"])

    compared = compare_methods(rows, "finetuned:single", "finetuned:joint", "ndcg", 10)
    assert [(c["dataset"], c["ratio"]) for c in compared] == [("office", 1.0)]
    assert compare_methods(rows, "finetuned:single", "fused", "ndcg", 10) == []

    results = tmp_path / "rows.json"
    results.write_text(json.dumps([{**r, "machine": "m", "date": "2026-01-01"} for r in rows]))
    out = tmp_path / "bench"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare_models.py"), "--results", str(results),
                    "--base", "popularity", "--other", "finetuned:joint", "--within", "1.0", "--name", "cmp",
                    "--root", str(out)], check=True, capture_output=True, cwd=ROOT)
    recorded = json.loads((out / "benchmarks" / "results" / "cmp.json").read_text())
    assert [(r["dataset"], r["goal_met"], r["machine"]) for r in recorded] == [("office", True, "m")]
    assert "All datasets: **met**" in (out / "BENCHMARKS.md").read_text()


def test_runs_that_differ_in_their_data_label_the_untrained_rows(tmp_path, tiny_backbone):
    """A text-template sweep: each run's untrained rows carry its label (label_methods), and a run
    whose model.text differs from what its folder was preprocessed with is refused."""
    table = yaml.safe_load(_write_configs(tmp_path, tiny_backbone).read_text())
    run = {"config": table["runs"][0]["config"], "model": None, "protocols": ["leave-one-out"],
           "methods": ["popularity", "untrained"], "label_methods": ["untrained"]}
    table["runs"] = [{**run, "label": "a"}, {**run, "label": "b", "methods": ["untrained"]}]
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(table))
    rows, _ = run_quality_table(load_table_config(tmp_path / "sweep.yaml"))
    assert {r["method"] for r in rows} == {"popularity", "untrained:a", "untrained:b"}

    table["runs"] = [{**run, "label": "labels", "overrides": ["model.text.labels=true"]}]
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(table))
    with pytest.raises(ValueError, match="preprocessed with other model.text"):
        run_quality_table(load_table_config(tmp_path / "other.yaml"))


def test_cli_evaluates_the_protocols_of_one_config(tmp_path, tiny_backbone, capsys):
    from coldrec.cli import main

    _write_configs(tmp_path, tiny_backbone)
    out = tmp_path / "rows.json"
    args = ["evaluate", "--config", str(tmp_path / "office.yaml"), "--protocols", "time-split,cold-users",
            "eval.max_users=20", "eval.methods=[popularity, untrained]", f"eval.output={out}"]
    assert main(args) in (0, None)
    rows = json.loads(out.read_text())
    assert {(r["protocol"], r["method"]) for r in rows} == {
        (p, m) for p in ("time-split", "cold-users") for m in ("popularity", "untrained")}
    assert "### office / cold-users" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown"):
        main(["evaluate", "--config", str(tmp_path / "office.yaml"), "--protocols", "random-split"])
