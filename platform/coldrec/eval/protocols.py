"""Evaluation protocols by name, as library code for the CLI, jobs and tests.

- ``leave-one-out``: preprocess's test (or valid) examples, one target per user; the
  protocol of the published numbers. Same users and tie rule as :func:`coldrec.eval.evaluate.evaluate`.
  With ``eval.refit_with_valid`` the ID baselines and signals are chosen on validation as
  always, then refit on training + validation examples to score test.
- ``time-split``: :mod:`coldrec.eval.time_split` (needs timestamps); rows for all / warm /
  cold targets.
- ``cold-users``: :mod:`coldrec.eval.cold_users`; one row set per history-length bucket.
- ``cross-scene`` is not a protocol of its own: it is leave-one-out of a model on a dataset
  it never saw in training; :func:`run_protocols` labels the rows so when ``trained_on``
  does not name the dataset's scene.

Every protocol returns rows ``{dataset, protocol, bucket, method, metric, k, value, users,
masked_history}`` (bucket "all" where a protocol has none).
"""

from __future__ import annotations

import logging

import pandas as pd

from coldrec.config import PipelineConfig
from coldrec.data.processed import check_text, load_examples, load_items, load_stats
from coldrec.eval.cold_users import cold_user_data
from coldrec.eval.examples import leave_one_out_training, load_interactions
from coldrec.eval.methods import Methods
from coldrec.eval.runner import EvalData, RunResult, run_methods
from coldrec.eval.time_split import time_split_data

PROTOCOLS = ("leave-one-out", "time-split", "cold-users")
log = logging.getLogger(__name__)


def leave_one_out_data(cfg: PipelineConfig, items: pd.DataFrame, protocol: str = "leave-one-out") -> EvalData:
    """``eval.split`` examples whose target is in the catalog, sampled as evaluate() samples them."""
    pdir = cfg.data.processed_dir
    examples = load_examples(pdir, cfg.eval.split)
    known = examples["target"].isin(set(items["item_id"]))
    examples = examples[known]
    if cfg.eval.max_users and len(examples) > cfg.eval.max_users:
        examples = examples.sample(n=cfg.eval.max_users, random_state=cfg.eval.seed)
    examples = examples.reset_index(drop=True).assign(targets=lambda d: d["target"].map(lambda t: [t]))
    valid = load_examples(pdir, "valid") if cfg.eval.split == "test" else None  # never tune on what is scored
    train, tune_train = leave_one_out_training(pdir, cfg.eval, valid)
    facts = {"split": cfg.eval.split, "skipped_users": int((~known).sum())}
    if tune_train is not None:
        facts["refit_with_valid"] = True
    return EvalData(dataset=cfg.data.scene_name, protocol=protocol, items=items, train=train, test=examples,
                    valid=valid, tune_train=tune_train, facts=facts)


def build_protocol(name: str, cfg: PipelineConfig, items: pd.DataFrame | None = None,
                   label: str | None = None) -> EvalData:
    """The EvalData of protocol ``name`` on ``cfg.data``'s processed folder."""
    pdir = cfg.data.processed_dir
    if not (pdir / "stats.json").exists():
        raise FileNotFoundError(f"no processed dataset at {pdir}; run `coldrec preprocess` first")
    if items is None:
        items = load_items(pdir).sort_values("item_id", kind="stable").reset_index(drop=True)
    scene_prefix = bool(load_stats(pdir).get("scene_prefix", False))  # render profiles as preprocess did
    if name == "leave-one-out":
        return leave_one_out_data(cfg, items, label or name)
    if name == "time-split":
        return time_split_data(cfg, items, load_interactions(pdir), scene_prefix, label or name, cfg.model.text)
    if name == "cold-users":
        return cold_user_data(cfg, items, load_interactions(pdir), scene_prefix, protocol=label or name,
                              text=cfg.model.text)
    raise ValueError(f"unknown protocol {name!r}; choose from {PROTOCOLS}")


def run_protocols(cfg: PipelineConfig, model_path: str | None = None, protocols: list[str] | None = None,
                  methods: list[str] | None = None, trained_on: list[str] | None = None,
                  factory: Methods | None = None) -> dict[str, RunResult]:
    """Run ``protocols`` (default ``eval.protocols``) x ``methods`` (default ``eval.methods``).

    ``trained_on``: scenes the fine-tuned model saw; when given without this dataset's
    scene, leave-one-out rows are labelled ``cross-scene``. A protocol the dataset cannot
    support (a time split without timestamps) is skipped with a logged reason.
    """
    protocols = protocols or list(cfg.eval.protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {PROTOCOLS}")
    methods = [m for m in (methods or cfg.eval.methods) if m != "finetuned" or model_path]
    factory = factory or Methods(cfg.eval, cfg.model, model_path)
    cross = trained_on is not None and cfg.data.scene_name not in trained_on
    # Profiles are rendered with model.text, which the untrained encoder reads too: it must be what
    # the folder was preprocessed with (a protocol the data cannot give is skipped below, this is a
    # config error and fails the run).
    check_text(cfg.data.processed_dir, cfg.model.text)
    results: dict[str, RunResult] = {}
    for name in protocols:
        label = "cross-scene" if cross and name == "leave-one-out" else name
        try:
            data = build_protocol(name, cfg, label=label)
        except ValueError as e:
            log.warning("%s on %s skipped: %s", name, cfg.data.scene_name, e)
            continue
        results[label] = run_methods(data, factory, methods, cfg.eval.ks, cfg.eval.mask_history, cfg.eval.seed)
    return results
