"""benchmarks/cross_scene_fusion.py: weights learned on one scene, scored on another, end to end."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cross_scene_fusion_learns_on_one_scene_and_scores_another(tmp_path, tiny_backbone):
    from synthetic import write_processed

    configs = {}
    for scene, seed in (("office", 0), ("shop", 1)):
        write_processed(tmp_path / "data" / scene, users=30, seed=seed)
        configs[scene] = tmp_path / f"{scene}.yaml"
        configs[scene].write_text(yaml.safe_dump({
            "data": {"dataset": "generic", "scene": scene, "output_dir": str(tmp_path / "data")},
            "model": {"backbone": tiny_backbone},
        }))  # fmt: skip
    script = str(ROOT / "benchmarks" / "cross_scene_fusion.py")
    done = subprocess.run([sys.executable, script, "--target", str(configs["office"]), "--tune", str(configs["shop"]),
                           "--tune-users", "20", "--decays", "1.0", "--in-scene", "--root", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "benchmarks" / "results" / "quality-cross-scene-fusion.json").read_text())
    in_scene = "fused, text only, with word overlap, two-start search, weights chosen on office validation users" \
               " (in-scene, not goal 2)"
    assert {r["method"] for r in rows} == {"content", "fused, text only", "fused, text only, with word overlap",
                                           "fused, text only, with word overlap, two-start search", in_scene}
    assert all(r["dataset"] == "office" and r["tune_users"] == 20 for r in rows)
    assert all((r["tuned_on"], r["protocol"]) == (("office", "leave-one-out") if r["method"] == in_scene
                                                  else ("shop", "cross-scene")) for r in rows)
    assert all(0.0 <= r["value"] <= 1.0 for r in rows) and {r["metric"] for r in rows} == {"ndcg@10", "recall@10"}
    assert "<!-- begin:quality-cross-scene-fusion -->" in (tmp_path / "BENCHMARKS.md").read_text()
    same = subprocess.run([sys.executable, script, "--target", str(configs["office"]), "--tune", str(configs["office"]),
                           "--root", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert same.returncode != 0 and "another scene" in same.stderr
