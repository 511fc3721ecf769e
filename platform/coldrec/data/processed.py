"""Reading a processed dataset folder back (small tables: items, examples, stats)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from coldrec.config import TextConfig
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


def processed_text(processed_dir: str | Path) -> TextConfig:
    """The item templates and history order the folder's texts were rendered with (``model.text``
    at preprocess time; the defaults for folders written before it was recorded)."""
    return TextConfig.model_validate(load_stats(processed_dir).get("text") or {})


def check_text(processed_dir: str | Path, text: TextConfig) -> None:
    """Fail when the folder's texts were rendered with another ``model.text`` than ``text``: a model
    trained or scored on them would record, and serve with, a template it never saw. A folder without
    ``stats.json`` (not written by ``coldrec preprocess``) records nothing to check against."""
    if not (Path(processed_dir) / "stats.json").is_file():
        return
    made = processed_text(processed_dir)
    if made != text:
        changed = sorted(k for k, v in text.model_dump().items() if made.model_dump().get(k) != v)
        raise ValueError(
            f"{processed_dir} was preprocessed with other model.text settings ({', '.join(changed)} differ): "
            "run `coldrec preprocess` with this config first"
        )
