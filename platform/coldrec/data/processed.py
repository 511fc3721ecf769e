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
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return pd.read_parquet(Path(processed_dir) / "examples" / split)


def load_stats(processed_dir: str | Path) -> dict:
    return json.loads((Path(processed_dir) / "stats.json").read_text())
