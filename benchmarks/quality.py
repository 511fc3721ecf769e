"""Leave-one-out accuracy of one config: preprocess, fine-tune, evaluate, record.

    python benchmarks/quality.py --config configs/amazon-scientific.yaml

Writes benchmarks/results/<run_name>.json and the matching section of BENCHMARKS.md
(command, machine, date, training time and the table), replacing an earlier run of the
same name.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from coldrec.bench import record  # noqa: E402
from coldrec.config import load_config  # noqa: E402
from coldrec.pipeline import run_pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--name", default=None, help="section name (default: train.run_name)")
    parser.add_argument("--machine", default=None, help="override the detected machine description")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    out = run_pipeline(cfg)
    report, trained, timings = out["report"], out["train"], out["timings"]
    rows = [
        {"dataset": report.dataset, "protocol": "leave-one-out", "split": report.split, "method": r.method,
         "metric": r.metric, "k": r.k, "value": round(r.value, 4), "masked_history": r.masked_history}
        for r in report.rows
    ]
    epochs = [h for h in trained.history]
    markdown = (
        f"Fine-tuning: {cfg.train.epochs} epoch(s), at most {cfg.train.max_steps_per_epoch or 'all'} steps per epoch, "
        f"batch {cfg.train.batch_size} x {cfg.train.num_workers} worker(s), backbone `{cfg.model.backbone}`; "
        f"wall time: preprocess {timings['preprocess_s']} s, train {timings['train_s']} s, "
        f"evaluate {timings['evaluate_s']} s. Validation per epoch: {epochs}\n\n```\n{report.table()}\n```"
    )
    command = "python benchmarks/quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = record(args.name or cfg.train.run_name, rows, markdown, command, machine=args.machine)
    print(report.table())
    print(f"recorded in {path} and BENCHMARKS.md")


if __name__ == "__main__":
    main()
