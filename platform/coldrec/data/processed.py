"""Reading a processed dataset folder back (small tables: items, examples, stats)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from coldrec.data.schema import SPLITS


def load_items(processed_dir: str | Path) -> pd.DataFrame:
    """The catalog: item_id, scene, text fields and the rendered ``text``."""
    return pd.read_parquet(Path(processed_dir) / "items")


def load_examples(processed_dir: str | Path, split: str) -> pd.DataFrame:
    """One split's examples (user_id, history, target, ...), sorted by user, history length and target."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    examples = pd.read_parquet(Path(processed_dir) / "examples" / split)
    # The files' names, and so the order they are read in, change with every preprocess run: sorted,
    # a seeded sample of the examples (the weights' tuning users, the validation users) is the same
    # after every run on the same data.
    key = examples.assign(_length=examples["history"].map(len))
    order = key.sort_values(["user_id", "_length", "target"], kind="stable").index
    return examples.loc[order].reset_index(drop=True)


def load_stats(processed_dir: str | Path) -> dict:
    return json.loads((Path(processed_dir) / "stats.json").read_text())
