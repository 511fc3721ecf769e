"""The quality table: every protocol x method for given (trained or untrained) models.

    python benchmarks/quality_table.py --config configs/quality-table-cpu.yaml
    python benchmarks/quality_table.py --config configs/quality-table-cpu.yaml eval.max_users=200

Overrides after the config apply to every run. Writes benchmarks/results/<name>.json (rows of
dataset, protocol, bucket where there is one, method, metric, k, value, users, masked_history,
model, machine, date) and the matching section of BENCHMARKS.md; it never trains.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from coldrec.bench import record  # noqa: E402
from coldrec.eval.table import load_table_config, markdown, run_quality_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--name", default="quality", help="results file and BENCHMARKS.md section")
    parser.add_argument("--machine", default=None, help="override the detected machine description")
    parser.add_argument("--root", default=".", help="where benchmarks/results/ and BENCHMARKS.md live")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows, notes = run_quality_table(load_table_config(args.config, args.overrides))
    text = markdown(rows, notes)
    command = "python benchmarks/quality_table.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = record(args.name, rows, text, command, root=args.root, machine=args.machine)
    print(text)
    print(f"recorded {len(rows)} rows in {path} and BENCHMARKS.md")


if __name__ == "__main__":
    main()
