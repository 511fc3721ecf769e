"""Run methods on one protocol's data and turn the rankings into result rows.

A protocol (leave-one-out, time split, cold-user buckets) builds an :class:`EvalData`;
:func:`run_methods` scores the whole catalog for every query with every method, on
exactly the same queries, and returns rows of
``{dataset, protocol, bucket, method, metric, k, value, users, masked_history}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from coldrec.eval.baselines import user_item_matrix
from coldrec.eval.catalog import catalog_metrics
from coldrec.eval.methods import Methods
from coldrec.eval.ranking import filter_targets, mean_metrics, multi_target_ranks, per_query_metrics, top_k

BATCH = 512  # queries scored at once: a (512, 4.4k) float32 block is ~9 MB


@dataclass
class EvalData:
    """What a protocol hands to :func:`run_methods`.

    items: the catalog (item_id, text), in the column order of every score matrix.
    train: examples (user_id, history, target) the ID baselines and popularity fit on.
    test: queries: user_id, history (oldest first), profile_text, targets (list of item ids)
      and optionally ``bucket`` (a label per query; a user may appear in several buckets).
    valid: examples (history, target) to choose baseline hyper-parameters on, or None.
    tune_train: what the baselines fit on while choosing (None = ``train``); a protocol whose
      validation targets lie inside ``train`` must pass the training data before them.
    target_groups: name -> (items,) bool; metrics are also reported on only the targets
      in each group (the time split's "warm" and "cold" targets).
    free_text_valid: validation examples as free-text queries (free_text, profile_text, target, no
      history), where some test queries are free text alone: the ``fused`` method learns its
      weights for them there (:mod:`coldrec.rank.free_text`).
    """

    dataset: str
    protocol: str
    items: pd.DataFrame
    train: pd.DataFrame
    test: pd.DataFrame
    valid: pd.DataFrame | None = None
    tune_train: pd.DataFrame | None = None
    target_groups: dict[str, np.ndarray] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)  # what the protocol did (cut time, counts), for reports
    free_text_valid: pd.DataFrame | None = None


@dataclass
class RunResult:
    rows: list[dict]
    info: dict  # per method: seconds and chosen hyper-parameters; the protocol's facts


TEXT_METHODS = ("untrained", "untrained-last-item", "finetuned", "fused")


def _diversity_vectors(methods: Methods, names: list[str], items: pd.DataFrame) -> np.ndarray | None:
    """One fixed text space for every method's diversity, whichever models a run evaluates: the
    untrained backbone's item vectors (so runs of different fine-tuned models compare). None when
    the run has no text method (ID-only runs report no diversity)."""
    if any(name in TEXT_METHODS for name in names):
        return methods.item_vectors("untrained", items)
    return None


def _rows(data: EvalData, method: str, masked: bool, bucket: str, metrics: dict[str, float], users: int) -> list[dict]:
    out = []
    for name, value in metrics.items():
        metric, _, k = name.partition("@")
        out.append({"dataset": data.dataset, "protocol": data.protocol, "bucket": bucket, "method": method,
                    "metric": metric, "k": int(k) if k else None, "value": round(float(value), 6), "users": users,
                    "masked_history": masked})
    return out


def run_methods(data: EvalData, methods: Methods, names: list[str], ks: list[int], mask_history: bool = False,
                seed: int = 0) -> RunResult:
    items, test = data.items, data.test.reset_index(drop=True)
    position = {item_id: i for i, item_id in enumerate(items["item_id"])}
    targets = [np.array([position[t] for t in ts if t in position], dtype=np.int64) for ts in test["targets"]]
    histories = [np.array([position[h] for h in hist if h in position], dtype=np.int64) for hist in test["history"]]
    buckets = test["bucket"].astype(str).to_numpy() if "bucket" in test else np.full(len(test), "all")
    tie_order = np.random.default_rng(seed).permutation(len(items))  # the same rule as evaluate()
    counts = np.asarray(user_item_matrix(data.train, items["item_id"].tolist()).sum(axis=0)).ravel()
    vectors = _diversity_vectors(methods, names, items)
    max_k = max(ks)
    rows: list[dict] = []
    info: dict = {"facts": data.facts, "users": len(test)}
    for method in names:
        start = time.perf_counter()
        scorer = methods.build(method, items, data.train, data.valid, tune_train=data.tune_train,
                               free_text_valid=data.free_text_valid)
        ranks: dict[bool, list[np.ndarray]] = {False: [], True: []}
        tops: dict[bool, list[np.ndarray]] = {False: [], True: []}
        for lo in range(0, len(test), BATCH):
            scores = np.array(scorer(test.iloc[lo : lo + BATCH]), dtype=np.float32)  # (batch, items)
            for masked in (False, True) if mask_history else (False,):
                if masked:
                    for r, (hist, tgt) in enumerate(zip(histories[lo : lo + BATCH], targets[lo : lo + BATCH])):
                        scores[r, hist[~np.isin(hist, tgt)]] = -np.inf  # never hide a target itself
                ranks[masked].extend(multi_target_ranks(scores, targets[lo : lo + BATCH], tie_order))
                tops[masked].append(top_k(scores, max_k, tie_order))
        for masked in (False, True) if mask_history else (False,):
            top = np.concatenate(tops[masked]) if tops[masked] else np.zeros((0, max_k), dtype=np.int64)
            per_query = per_query_metrics(ranks[masked], ks)
            groups = {name: per_query_metrics(filter_targets(targets, ranks[masked], keep), ks)
                      for name, keep in data.target_groups.items()}
            for bucket in dict.fromkeys(buckets):
                sel = buckets == bucket
                rows += _rows(data, method, masked, bucket, {**mean_metrics(per_query, sel),
                              **catalog_metrics(top[sel], counts, ks, vectors)}, int(sel.sum()))
                for name, group in groups.items():
                    label = name if bucket == "all" else f"{bucket}/{name}"
                    has = sel & ~np.isnan(group["mrr"])
                    rows += _rows(data, method, masked, label, mean_metrics(group, has), int(has.sum()))
        info[method] = {"seconds": round(time.perf_counter() - start, 1), **methods.chosen.get(method, {})}
    return RunResult(rows=rows, info=info)
