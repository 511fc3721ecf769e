"""One method against another in recorded quality rows, per dataset: other / base and a goal check.

    python benchmarks/compare_models.py --results benchmarks/results/quality-scenes-gpu.json \
        --base finetuned:single --other finetuned:joint --within 0.03 --name quality-scenes-gpu-goal

Reads rows that benchmarks/quality_table.py wrote (it never evaluates anything itself) and
records the comparison as benchmarks/results/<name>.json and a BENCHMARKS.md section, stamped
with the machine and date of the rows it compares. The goal is met on a dataset when
other >= (1 - within) x base.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from coldrec.bench import record  # noqa: E402
from coldrec.eval.table import compare_methods  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="a benchmarks/results/*.json of quality rows")
    parser.add_argument("--base", required=True, help="method name, e.g. finetuned:single")
    parser.add_argument("--other", required=True, help="method name, e.g. finetuned:joint")
    parser.add_argument("--metric", default="ndcg")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--within", type=float, default=0.03, help="allowed relative shortfall of other")
    parser.add_argument("--name", required=True, help="results file and BENCHMARKS.md section")
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    rows = json.loads(Path(args.results).read_text())
    compared = compare_methods(rows, args.base, args.other, args.metric, args.k)
    if not compared:
        raise SystemExit(f"{args.results}: no dataset has both {args.base} and {args.other} {args.metric}@{args.k}")
    machines = sorted({r["machine"] for r in rows if r["method"] in (args.base, args.other)})
    dates = sorted({r["date"] for r in rows if r["method"] in (args.base, args.other)})
    lines = [f"Computed from `{args.results}` (measured {', '.join(dates)}). Goal: {args.other} >= "
             f"{1 - args.within:.2f} x {args.base} on {args.metric}@{args.k}.", "",
             f"| dataset | protocol | {args.base} | {args.other} | ratio | goal |", "|---|---|---|---|---|---|"]
    for c in compared:
        c["goal_met"] = c["ratio"] is None or c["ratio"] >= 1 - args.within
        ratio = "-" if c["ratio"] is None else f"{c['ratio']:.3f}"
        lines.append(f"| {c['dataset']} | {c['protocol']} | {c['base_value']:.4f} | {c['other_value']:.4f} | "
                     f"{ratio} | {'met' if c['goal_met'] else 'not met'} |")
    lines.append(f"\nAll datasets: **{'met' if all(c['goal_met'] for c in compared) else 'not met'}**")
    command = "python benchmarks/compare_models.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = record(args.name, compared, "\n".join(lines), command, root=args.root, machine="; ".join(machines))
    print("\n".join(lines))
    print(f"recorded in {path} and BENCHMARKS.md")


if __name__ == "__main__":
    main()
