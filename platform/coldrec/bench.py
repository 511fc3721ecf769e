"""Recording benchmark figures: JSON rows plus a generated section of BENCHMARKS.md.

Figures are never typed by hand: a benchmark script calls :func:`record`, which writes the
rows to ``benchmarks/results/<name>.json`` and replaces the section between
``<!-- begin:<name> -->`` and ``<!-- end:<name> -->`` in BENCHMARKS.md.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from coldrec.machine import describe_machine


def record(name: str, rows: list[dict], markdown: str, command: str, root: str | Path = ".",
           machine: str | None = None) -> Path:
    root = Path(root)
    machine = machine or describe_machine()
    date = dt.date.today().isoformat()
    stamped = [{**row, "machine": machine, "date": date} for row in rows]
    out = root / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(stamped, indent=2) + "\n")

    section = (
        f"<!-- begin:{name} -->\n"
        f"Command: `{command}`  \nMachine: {machine}  \nDate: {date}  \nRaw rows: `{out.relative_to(root)}`\n\n"
        f"{markdown.rstrip()}\n<!-- end:{name} -->"
    )
    bench = root / "BENCHMARKS.md"
    text = bench.read_text() if bench.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- begin:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + f"\n\n## {name}\n\n{section}\n"
    bench.write_text(text)
    return out
