"""Building evaluation examples from a processed folder's canonical interactions.

The time-split and cold-user protocols need examples other than preprocess's
leave-one-out ones; these helpers rebuild them with pandas (the tables are small) in the
order preprocess uses: per user by (timestamp, position), null timestamps first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.config import EvalConfig, HistoryOrder, TextConfig
from coldrec.data.processed import load_examples
from coldrec.text import render_item_text, render_profile_text


def load_interactions(processed_dir: str | Path) -> pd.DataFrame:
    """user_id, item_id, timestamp, position, scene: sorted per user, oldest first."""
    inter = pd.read_parquet(Path(processed_dir) / "interactions")
    inter = inter.sort_values(["user_id", "timestamp", "position"], na_position="first", kind="stable")
    return inter.reset_index(drop=True)


def leave_one_out_training(processed_dir: str | Path, cfg: EvalConfig,
                           valid: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(train, tune_train) for leave-one-out: the training examples and None, or, with
    ``cfg.refit_with_valid`` on test, training + ``valid`` examples to score with and the training
    examples alone to choose hyper-parameters on (the validation targets must not be in the fit
    that is scored on them)."""
    train = load_examples(processed_dir, "train")
    if valid is None or cfg.split != "test" or not cfg.refit_with_valid:
        return train, None
    return pd.concat([train, valid], ignore_index=True), train


def plain_item_texts(items: pd.DataFrame, text: TextConfig | None = None) -> dict[str, str]:
    """item_id -> item text without a scene prefix: what profiles join (as preprocess does, with
    the folder's templates: :func:`coldrec.data.processed.processed_text`)."""
    return {row["item_id"]: render_item_text(row, False, text) for row in items.to_dict("records")}


def profile(history: Sequence[str], texts: dict[str, str], profile_items: int, scene: str | None,
            free_text: str | None = None, order: HistoryOrder = "newest-first") -> str:
    """The user tower's input for a history (oldest first), as preprocess renders it."""
    return render_profile_text([texts.get(h, "") for h in reversed(list(history))], free_text=free_text,
                               max_items=profile_items, scene=scene, order=order)


def sequences(inter: pd.DataFrame) -> pd.Series:
    """user_id -> list of item ids, oldest first (``inter`` sorted by :func:`load_interactions`)."""
    return inter.groupby("user_id", sort=True)["item_id"].agg(list)


def sequence_examples(seqs: pd.Series, max_history: int) -> pd.DataFrame:
    """Every interaction as a training target, with the history before it (empty for the first).

    Including first interactions makes popularity count every interaction, so any item
    seen in training scores above one never seen.
    """
    rows = [(user, seq[max(0, t - max_history) : t], seq[t]) for user, seq in seqs.items() for t in range(len(seq))]
    return pd.DataFrame(rows, columns=["user_id", "history", "target"])


def sample_users(users: Sequence[str], max_users: int | None, seed: int) -> list[str]:
    """A fixed random subset (all when ``max_users`` is None), in sorted order."""
    users = sorted(users)
    if max_users and len(users) > max_users:
        pick = np.random.default_rng(seed).choice(len(users), size=max_users, replace=False)
        users = [users[i] for i in sorted(pick)]
    return users
