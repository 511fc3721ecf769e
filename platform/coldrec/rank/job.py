"""Fit the Serve reranker for one index version, saved to ``<index version>/rerank/``: EASE's
lambda, the history decay and the fusion weights are chosen on the validation split with the
behaviour signals (and, with ``eval.fused_sequential``, SASRec, whose epochs validation also
chooses) fit on the training split; then the signals are refit on every split's examples (train,
valid and test), so the served signals know every interaction, the newest included, as
``eval.refit_with_valid`` does for the test figure. The weights for requests that are free text
alone are learned likewise, on the validation examples described in words
(:mod:`coldrec.rank.free_text`).

    coldrec rerank --config configs/amazon-scientific.yaml        # after `coldrec index`

Content scores come from the vectors stored in the index (exactly what the Retriever serves)
and the index's own model for the validation profiles, so the weights fit that model version.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.config import PipelineConfig
from coldrec.data.processed import load_examples
from coldrec.index.item_index import ItemIndex, resolve_index_dir
from coldrec.rank.free_text import fit_text_fusion
from coldrec.rank.fusion import FusionWeights, fit_fusion, save_reranker
from coldrec.rank.lexical import LexicalVectors
from coldrec.rank.signals import EASE_MAX_ITEMS, BehaviourSignals

RERANK_DIR = "rerank"
log = logging.getLogger(__name__)


def default_reranker_dir(index_dir: str | Path) -> Path:
    """Where the reranker of an index version lives (the version folder, or its parent's LATEST)."""
    return resolve_index_dir(index_dir) / RERANK_DIR


def fit_reranker(cfg: PipelineConfig, index_dir: str | Path | None = None) -> Path:
    """Fit signals and weights for the index at ``index_dir`` (default: the scene's LATEST)."""
    from coldrec.model.encoder import TextEncoder

    index_dir = resolve_index_dir(index_dir or Path(cfg.index.output_dir) / cfg.data.scene_name)
    index = ItemIndex.load(index_dir)
    rows = index.rows()
    item_ids = rows["item_id"].tolist()
    vectors = np.stack([index.vector(i) for i in item_ids]) if item_ids else np.zeros((0, index.dim), np.float32)
    pdir = cfg.data.processed_dir
    train, valid = load_examples(pdir, "train"), load_examples(pdir, "valid")
    lam = None
    if len(item_ids) <= EASE_MAX_ITEMS:  # EASE's lambda as the EASE baseline chooses it, on validation
        from coldrec.eval.baselines import EASE
        from coldrec.eval.methods import choose

        lam = choose(EASE(train, item_ids).scorer, cfg.eval.ease_lambdas, valid, item_ids, cfg.eval)[1]["chosen"]
    signals = BehaviourSignals.fit(train, item_ids, ease_lambda=lam, rp3=cfg.eval.fused_rp3)
    encoder = TextEncoder.load(index.meta["model_path"], model_config=cfg.model)
    texts = rows["text"].tolist() if "text" in rows else []  # word overlap needs item texts, no interaction
    lexical = LexicalVectors.fit_if_any(texts) if cfg.eval.fused_lexical else None
    sequential = None
    if cfg.eval.fused_sequential and item_ids and not valid.empty:
        from coldrec.rank.sequential import SequentialSignal  # imports torch

        sequential = SequentialSignal.fit(train, item_ids, cfg.eval.sequential, valid)
    lexical_rows = None if lexical is None else lexical.transform(texts)
    weights, report = fit_fusion(signals, encoder, vectors, item_ids, valid, cfg.eval.itemknn_decays,
                                 batch_size=cfg.eval.batch_size, max_users=cfg.eval.tune_max_users,
                                 seed=cfg.eval.seed, lexical_rows=lexical_rows,
                                 sequential=sequential, softmax_start=cfg.eval.fused_softmax_start,
                                 feedback=cfg.eval.fused_feedback, rp3=cfg.eval.fused_rp3)
    text_weights, text_report = _fit_text_weights(cfg, signals, encoder, vectors, item_ids, valid, lexical,
                                                  lexical_rows)
    known = pd.concat([train, valid, load_examples(pdir, "test")], ignore_index=True)  # every interaction, once chosen
    signals = BehaviourSignals.fit(known, item_ids, decay=signals.decay, ease_lambda=lam, rp3=bool(weights.rp3))
    if sequential is not None:
        report["sasrec"] = {k: sequential.report[k] for k in ("best_epoch", "epochs_run", "seconds")}
        sequential = (SequentialSignal.fit(known, item_ids, cfg.eval.sequential.model_copy(
            update={"epochs": sequential.report["best_epoch"]})) if weights.uses_sequential else None)
    report = {**report, "ease_lambda": lam, "model_version": index.meta.get("model_version"),
              "tune_examples": len(train), "signal_examples": len(known)}
    out = save_reranker(index_dir / RERANK_DIR, signals, weights, report, lexical, sequential, text_weights,
                        text_report)
    log.info("reranker for %s: %s (%s); free text alone: %s (%s)", index_dir, weights.model_dump(), report,
             None if text_weights is None else text_weights.model_dump(), text_report)
    return out


def _fit_text_weights(cfg: PipelineConfig, signals: BehaviourSignals, encoder, vectors: np.ndarray,
                      item_ids: list[str], valid: pd.DataFrame, lexical: LexicalVectors | None,
                      lexical_rows) -> tuple[FusionWeights | None, dict | None]:
    """The weights for free text alone (:mod:`coldrec.rank.free_text`), learned on the validation
    examples described in words as the cold-user protocol describes them, or (None, None) when
    ``eval.fused_free_text`` is off or no example can be described."""
    if not cfg.eval.fused_free_text or valid.empty or not item_ids:
        return None, None
    from coldrec.data.processed import load_items, load_stats, processed_text
    from coldrec.eval.cold_users import free_text_examples

    pdir = cfg.data.processed_dir
    scene = cfg.data.scene_name if load_stats(pdir).get("scene_prefix") else None  # profiles as preprocess made them
    queries = free_text_examples(valid, load_items(pdir), cfg.data.profile_items, scene, processed_text(pdir))
    if queries.empty:
        return None, None
    return fit_text_fusion(signals, encoder, vectors, item_ids, queries, lexical, lexical_rows,
                           batch_size=cfg.eval.batch_size, max_users=cfg.eval.tune_max_users, seed=cfg.eval.seed,
                           softmax_start=cfg.eval.fused_softmax_start)
