"""Global time split: train on everything before a cut in time, test on what follows.

The cut is the ``quantile`` of all interaction timestamps. Training data = every
interaction strictly before the cut. A test user has at least one interaction before
the cut (their history, newest ``max_history`` kept) and one at or after it; the target
is their first interaction after the cut (``targets="first"``) or every one of them
(``"all"``). A *cold* target is an item that no one interacted with before the cut: only
a model that reads item text can rank it; *warm* targets are the rest.

Baseline hyper-parameters are chosen by the same split applied again to the training
data alone (a cut at the same quantile of the pre-cut timestamps), never on test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coldrec.config import PipelineConfig, TextConfig
from coldrec.eval.examples import plain_item_texts, profile, sample_users, sequence_examples, sequences
from coldrec.eval.runner import EvalData


def cut_time(inter: pd.DataFrame, quantile: float) -> int:
    """The timestamp at ``quantile``; interactions strictly before it are training data."""
    ts = inter["timestamp"].dropna()
    if ts.empty:
        raise ValueError("the time split needs timestamps, and this dataset has none (order only)")
    cut = int(np.quantile(ts.to_numpy(), quantile, method="higher"))
    if not (ts < cut).any():
        raise ValueError(f"no interaction before the cut at quantile {quantile}: choose a larger quantile")
    return cut


def split_queries(inter: pd.DataFrame, cut: int, max_history: int, targets: str = "first") -> pd.DataFrame:
    """user_id, history (before the cut), targets (after it) for users with both."""
    timed = inter[inter["timestamp"].notna()]
    before = sequences(timed[timed["timestamp"] < cut])
    after = sequences(timed[timed["timestamp"] >= cut])
    users = before.index.intersection(after.index)
    rows = []
    for user in users:
        later = list(dict.fromkeys(after[user]))  # repeats of one item count once
        rows.append((user, before[user][-max_history:], later[:1] if targets == "first" else later))
    return pd.DataFrame(rows, columns=["user_id", "history", "targets"])


def time_split_data(cfg: PipelineConfig, items: pd.DataFrame, inter: pd.DataFrame, scene_prefix: bool = False,
                    protocol: str = "time-split", text: TextConfig | None = None) -> EvalData:
    """The protocol's EvalData: queries on a fixed sample of ``eval.max_users`` test users.

    ``items`` in catalog order; ``inter`` from :func:`coldrec.eval.examples.load_interactions`;
    ``text``: the templates and history order the processed folder was rendered with.
    """
    text = text or TextConfig()
    ev, max_history = cfg.eval, cfg.data.max_history
    cut = cut_time(inter, ev.time_quantile)
    train_inter = inter[inter["timestamp"] < cut]
    queries = split_queries(inter, cut, max_history, ev.time_targets)
    keep = set(sample_users(queries["user_id"], ev.max_users, ev.seed))
    queries = queries[queries["user_id"].isin(keep)].reset_index(drop=True)
    texts = plain_item_texts(items, text)
    scene = cfg.data.scene_name if scene_prefix else None
    order = text.history_order
    queries["profile_text"] = [profile(h, texts, cfg.data.profile_items, scene, order=order) for h in queries["history"]]

    # Validation: the same split inside the training period.
    inner_cut = cut_time(train_inter, ev.time_quantile)
    valid = split_queries(train_inter, inner_cut, max_history, "first")
    valid = valid.assign(target=[t[0] for t in valid["targets"]],
                         profile_text=[profile(h, texts, cfg.data.profile_items, scene, order=order)
                                       for h in valid["history"]])

    seen = items["item_id"].isin(set(train_inter["item_id"])).to_numpy()  # (items,)
    cold_ids = set(items.loc[~seen, "item_id"])
    facts = {"cut_timestamp": cut, "quantile": ev.time_quantile, "targets": ev.time_targets,
             "train_interactions": len(train_inter), "test_users": len(queries),
             "cold_items": int((~seen).sum()), "first_target_cold_users": int(queries["targets"].map(lambda t: t[0] in cold_ids).sum())}
    return EvalData(dataset=cfg.data.scene_name, protocol=protocol, items=items,
                    train=sequence_examples(sequences(train_inter), max_history), test=queries, valid=valid,
                    tune_train=sequence_examples(sequences(train_inter[train_inter["timestamp"] < inner_cut]),
                                                 max_history),
                    target_groups={"warm": seen, "cold": ~seen}, facts=facts)
