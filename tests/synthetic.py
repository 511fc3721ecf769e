"""A small processed dataset folder (the layout of coldrec.data.schema), built without Ray."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from coldrec.data.schema import EXAMPLE_SCHEMA
from coldrec.text import render_profile_text

TOPICS = {
    "pen": ["ballpoint pen blue ink", "gel pen black", "fountain pen with converter", "red marker pen"],
    "paper": ["copy paper ream letter size", "sticky notes yellow", "legal pad ruled", "index cards"],
    "chair": ["ergonomic office chair mesh", "desk chair lumbar support", "chair mat for carpet", "stool"],
}

TASTE_ITEMS = [f"i{n}" for n in range(8)]


def taste_examples() -> pd.DataFrame:
    """Twelve training examples in two taste groups (i0-i3, i4-i6); i7 is never interacted with."""
    rows = []
    for u in range(12):
        group = TASTE_ITEMS[:4] if u % 2 else TASTE_ITEMS[4:7]
        seq = [group[(u + s) % len(group)] for s in range(4)]
        rows.append({"user_id": f"u{u}", "history": seq[:-1], "target": seq[-1]})
    return pd.DataFrame(rows)


def write_processed(root: Path, users: int = 24, history: int = 6, seed: int = 0) -> Path:
    """Users buy within one topic, so a text model can learn that profiles predict topics."""
    rng = random.Random(seed)
    items = [(f"{t}-{i}", text) for t, texts in TOPICS.items() for i, text in enumerate(texts)]
    text_by_id = dict(items)
    (root / "items").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"item_id": [i for i, _ in items], "scene": ["office"] * len(items), "title": [t for _, t in items],
                  "categories": [i.split("-")[0] for i, _ in items], "brand": [None] * len(items),
                  "description": [None] * len(items), "genres": [None] * len(items), "year": [None] * len(items),
                  "text": [t for _, t in items]}),
        root / "items" / "part-0.parquet",
    )
    rows = {"train": [], "valid": [], "test": []}
    for u in range(users):
        topic = list(TOPICS)[u % len(TOPICS)]
        seq = [f"{topic}-{rng.randrange(4)}" for _ in range(history)]
        for t in range(1, len(seq)):
            split = "test" if t == len(seq) - 1 else "valid" if t == len(seq) - 2 else "train"
            hist = seq[:t]
            rows[split].append({
                "user_id": f"u{u}", "scene": "office", "history": hist, "target": seq[t], "split": split,
                "profile_text": render_profile_text([text_by_id[h] for h in reversed(hist)]),
                "target_text": text_by_id[seq[t]],
            })
    for split, data in rows.items():
        (root / "examples" / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(data, schema=EXAMPLE_SCHEMA), root / "examples" / split / "part-0.parquet")
    (root / "stats.json").write_text(json.dumps({"synthetic": True}))
    return root
