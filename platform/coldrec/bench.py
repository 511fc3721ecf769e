"""Recording benchmark figures: JSON rows plus a generated section of BENCHMARKS.md.

Figures are never typed by hand: a benchmark script calls :func:`record`, which writes the
rows to ``benchmarks/results/<name>.json`` and replaces the section between
``<!-- begin:<section> -->`` and ``<!-- end:<section> -->`` in BENCHMARKS.md (section defaults
to name). Several scripts can share one results file: each passes ``replace={"benchmark": ...}``
so that only its own earlier rows are replaced and the others' are kept.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from coldrec.machine import describe_machine


def record(name: str, rows: list[dict], markdown: str, command: str, root: str | Path = ".",
           machine: str | None = None, section: str | None = None, replace: dict | None = None) -> Path:
    """Write ``rows`` (stamped with machine and date) and their BENCHMARKS.md section.

    ``replace``: keep the rows already in the results file except those whose fields equal
    all of these values (None: the file holds only ``rows``). ``section``: the BENCHMARKS.md
    section id (default ``name``).
    """
    root = Path(root)
    machine = machine or describe_machine()
    date = dt.date.today().isoformat()
    section_id = section or name
    stamped = [{**row, "machine": machine, "date": date} for row in rows]
    out = root / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if replace is not None and out.exists():
        kept = [r for r in json.loads(out.read_text()) if any(r.get(k) != v for k, v in replace.items())]
        stamped = kept + stamped
    out.write_text(json.dumps(stamped, indent=2) + "\n")

    block = (
        f"<!-- begin:{section_id} -->\n"
        f"Command: `{command}`  \nMachine: {machine}  \nDate: {date}  \nRaw rows: `{out.relative_to(root)}`\n\n"
        f"{markdown.rstrip()}\n<!-- end:{section_id} -->"
    )
    bench = root / "BENCHMARKS.md"
    text = bench.read_text() if bench.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- begin:{re.escape(section_id)} -->.*?<!-- end:{re.escape(section_id)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + f"\n\n## {section_id}\n\n{block}\n"
    bench.write_text(text)
    return out
