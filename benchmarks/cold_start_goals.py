"""The accuracy issue's cold-item and cold-user goals, checked on recorded quality rows.

    python benchmarks/cold_start_goals.py --results benchmarks/results/quality.json --name quality-cold-start-goals

Reads rows that benchmarks/quality_table.py wrote (it evaluates nothing itself) and records the checks
(coldrec.eval.goals) as benchmarks/results/<name>.json and a BENCHMARKS.md section, stamped with the
machine and date of the rows it checks.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from coldrec.bench import record  # noqa: E402
from coldrec.eval.goals import cold_item_checks, cold_user_checks  # noqa: E402


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="a benchmarks/results/*.json of quality rows")
    parser.add_argument("--method", default="fused")
    parser.add_argument("--name", required=True, help="results file and BENCHMARKS.md section")
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    rows = json.loads(Path(args.results).read_text())
    items = cold_item_checks(rows, args.method)
    users = [c for metric in ("ndcg", "recall") for c in cold_user_checks(rows, args.method, metric=metric)]
    if not items or not users:
        raise SystemExit(f"{args.results}: no time-split or cold-user rows of {args.method} with its baselines")
    dates = sorted({r["date"] for r in rows})
    lines = [f"Computed from `{args.results}` (measured {', '.join(dates)}), method `{args.method}`, history unmasked.", "",
             "Cold items: Recall@10 on cold targets >= 0.8 x on warm targets, and the ID baselines score 0 on them.", "",
             "| dataset | cold | warm | ratio | ID baselines on cold | goal |", "|---|---|---|---|---|---|"]
    for c in items:
        ratio = "-" if c["ratio"] is None else f"{c['ratio']:.2f}"
        ids = ", ".join(f"{m} {v:.4f}" for m, v in c["id_baselines_on_cold"].items())
        lines.append(f"| {c['dataset']} | {c['cold']:.4f} | {c['warm']:.4f} | {ratio} | {ids} | {_verdict(c['goal_met'])} |")
    lines += ["", "Cold users: in every bucket, >= 2 x popularity and > item-kNN.", "",
              f"| dataset | bucket | metric | {args.method} | popularity | itemknn | goal |", "|---|---|---|---|---|---|---|"]
    for c in users:
        lines.append(f"| {c['dataset']} | {c['bucket']} | {c['metric']} | {c['value']:.4f} | {c['popularity']:.4f} | "
                     f"{c['itemknn']:.4f} | {_verdict(c['goal_met'])} |")
    met = all(c["goal_met"] for c in items + users)
    lines.append(f"\nBoth goals, every dataset and bucket: **{'met' if met else 'not met'}**")
    machines = sorted({r["machine"] for r in rows})
    command = "python benchmarks/cold_start_goals.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = record(args.name, items + users, "\n".join(lines), command, root=args.root, machine="; ".join(machines))
    print("\n".join(lines))
    print(f"recorded in {path} and BENCHMARKS.md")


if __name__ == "__main__":
    main()
