"""Every evaluation method by name, with its hyper-parameters chosen on validation.

``Methods`` builds a scorer for a method on a protocol's data (catalog, training and
validation examples) and caches what does not depend on the protocol: loaded encoders
and their item vectors. Hyper-parameters of the baselines (EASE's lambda, item-kNN's
recency decay) are chosen by NDCG@10 on the validation examples, never on test; with no
validation examples the middle value of the grid is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.config import EvalConfig, ModelConfig
from coldrec.eval.baselines import BM25, EASE, ItemKNN
from coldrec.eval.metrics import rank_metrics, target_ranks
from coldrec.eval.scorers import Scorer, popularity_scorer, vector_scorer

ID_METHODS = ("popularity", "itemknn", "ease")
TEXT_METHODS = ("bm25",)
ENCODER_METHODS = ("untrained-last-item", "untrained", "finetuned")
# fused: the profile model (fine-tuned when a model is given, else untrained) plus item-kNN,
# popularity and freshness, weighted as learned on validation (coldrec.rank.fusion).
ALL_METHODS = ("popularity", "itemknn", "ease", "bm25", "untrained-last-item", "untrained", "finetuned", "fused")
TUNE_K = 10


def validation_ndcg(scorer: Scorer, valid: pd.DataFrame, item_ids: Sequence[str], seed: int = 0,
                    max_users: int | None = 2000) -> float:
    """NDCG@10 of one target per row (``target``) on validation examples."""
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    valid = valid[valid["target"].isin(position)]
    if max_users and len(valid) > max_users:
        valid = valid.sample(n=max_users, random_state=seed)
    tie_order = np.random.default_rng(seed).permutation(len(item_ids))
    targets = valid["target"].map(position).to_numpy()
    ranks = [target_ranks(np.asarray(scorer(valid.iloc[lo : lo + 512]), dtype=np.float32), targets[lo : lo + 512],
                          tie_order) for lo in range(0, len(valid), 512)]
    return rank_metrics(np.concatenate(ranks), [TUNE_K])[f"ndcg@{TUNE_K}"] if ranks else 0.0


def choose(build: Callable[[float], Scorer], grid: Sequence[float], valid: pd.DataFrame | None,
           item_ids: Sequence[str], cfg: EvalConfig) -> tuple[Scorer, dict]:
    """The grid value with the best validation NDCG@10; returns (scorer, what was chosen and why)."""
    if valid is None or valid.empty:
        value = grid[len(grid) // 2]
        return build(value), {"chosen": value, "on": "no validation examples: middle of the grid"}
    results: dict[float, float] = {}
    best: tuple[float, Scorer] | None = None
    for value in grid:
        scorer = build(value)
        results[value] = validation_ndcg(scorer, valid, item_ids, cfg.seed, cfg.tune_max_users)
        if best is None or results[value] > results[best[0]]:
            best = (value, scorer)
    return best[1], {"chosen": best[0], "on": f"validation ndcg@{TUNE_K}", "grid": results}


class Methods:
    """Scorer factory for one run; encoders and item vectors are loaded once per source."""

    def __init__(self, cfg: EvalConfig, model: ModelConfig, model_path: str | None = None):
        self.cfg, self.model, self.model_path = cfg, model, model_path
        self._encoders: dict[str, object] = {}
        self._vectors: dict[tuple[str, int], np.ndarray] = {}
        self.chosen: dict[str, dict] = {}  # method -> hyper-parameter choice of the last build
        self._fitted: dict[tuple, tuple[Scorer, dict]] = {}  # protocols sharing training data share a fit
        self._sequential: dict[tuple, object] = {}  # fitted SASRecs (coldrec.rank.sequential), likewise

    def _source(self, method: str) -> str | None:
        return self.model_path if method == "finetuned" else self.model.backbone

    def encoder(self, method: str):
        from coldrec.model.encoder import TextEncoder

        source = self._source(method)
        if method == "finetuned" and (not source or not Path(source).exists()):
            raise FileNotFoundError(f"no fine-tuned model at {source}; run `coldrec train` first or pass --model")
        if source not in self._encoders:
            self._encoders[source] = TextEncoder.load(source, model_config=self.model)
        return self._encoders[source]

    def item_vectors(self, method: str, items: pd.DataFrame) -> np.ndarray:
        """(items, dim) item-tower vectors of ``items['text']`` for an encoder method, cached (with the
        warm items' ID vectors fused in, for a fine-tuned model that has them)."""
        enc = self.encoder(method)
        key = (self._source(method), hash(tuple(items["item_id"])))
        if key not in self._vectors:
            scenes = items["scene"].tolist() if "scene" in items else None
            self._vectors[key] = enc.encode_items(items["text"].tolist(), batch_size=self.cfg.batch_size,
                                                  item_ids=items["item_id"].tolist(), scenes=scenes)
        return self._vectors[key]

    def build(self, method: str, items: pd.DataFrame, train: pd.DataFrame,
              valid: pd.DataFrame | None = None, tune_train: pd.DataFrame | None = None,
              free_text_valid: pd.DataFrame | None = None) -> Scorer:
        """A scorer over ``items`` (catalog order) for ``method``; ID models fit on ``train``.

        Grids are searched on ``valid`` with the model fit on ``tune_train`` when given (then
        refit on ``train`` with the chosen value), else fit on ``train``. ``free_text_valid``
        (validation examples as free-text queries) is where ``fused`` learns its weights for
        queries that are free text alone.
        """
        item_ids = items["item_id"].tolist()
        if method == "popularity":
            return popularity_scorer(train, item_ids)
        if method in ("itemknn", "ease"):
            key = (method, _fingerprint(items), _fingerprint(train), _fingerprint(valid), _fingerprint(tune_train))
            if key not in self._fitted:
                self._fitted[key] = self._fit(method, item_ids, train, valid, tune_train)
            scorer, self.chosen[method] = self._fitted[key]
            return scorer
        if method == "bm25":
            return BM25(items["text"].tolist()).scorer("profile_text")
        if method == "fused":
            return self._fused(items, train, valid, tune_train, free_text_valid)
        if method in ENCODER_METHODS:
            return vector_scorer(self.encoder(method), self.item_vectors(method, items),
                                 dict(zip(items["item_id"], items["text"])), self.cfg.batch_size,
                                 last_item_only=method == "untrained-last-item")
        raise ValueError(f"unknown method {method!r}; choose from {ALL_METHODS}")

    def _fit(self, method: str, item_ids: list[str], train: pd.DataFrame, valid: pd.DataFrame | None,
             tune_train: pd.DataFrame | None) -> tuple[Scorer, dict]:
        model, grid = (ItemKNN, self.cfg.itemknn_decays) if method == "itemknn" else (EASE, self.cfg.ease_lambdas)
        fitted = model(train if tune_train is None else tune_train, item_ids)
        scorer, chosen = choose(fitted.scorer, grid, valid, item_ids, self.cfg)
        if tune_train is not None:
            scorer = model(train, item_ids).scorer(chosen["chosen"])
        return scorer, chosen

    def fused_source(self) -> str:
        """The encoder method whose scores ``fused`` builds on."""
        return "finetuned" if self.model_path else "untrained"

    def sequential(self, item_ids: list[str], train: pd.DataFrame, valid: pd.DataFrame | None,
                   epochs: int | None = None):
        """A SASRec (:class:`coldrec.rank.sequential.SequentialSignal`) fit on ``train``; its epoch
        chosen on ``valid``, or ``epochs`` of training without one. Cached per data."""
        from coldrec.rank.sequential import SequentialSignal

        key = (tuple(item_ids), _fingerprint(train), _fingerprint(valid), epochs)
        if key not in self._sequential:
            cfg = self.cfg.sequential if epochs is None else self.cfg.sequential.model_copy(update={"epochs": epochs})
            self._sequential[key] = SequentialSignal.fit(train, item_ids, cfg, valid)
        return self._sequential[key]

    def _fused(self, items: pd.DataFrame, train: pd.DataFrame, valid: pd.DataFrame | None,
               tune_train: pd.DataFrame | None, free_text_valid: pd.DataFrame | None = None) -> Scorer:
        """Content + behaviour + word overlap + SASRec; weights learned on ``valid`` with signals
        fit on ``tune_train`` (or ``train``), then the signals refit on ``train`` for scoring (SASRec
        for the epochs chosen on ``valid``). The TF-IDF vocabulary is fit on the catalog's item
        texts, which needs no interaction. A query that is free text alone (no history, a
        ``free_text``) is scored with weights of its own, learned on ``free_text_valid``
        (:mod:`coldrec.rank.free_text`), when given and ``eval.fused_free_text`` is on."""
        from coldrec.rank.feedback import pseudo_history
        from coldrec.rank.free_text import fit_text_fusion, query_words, text_features, uses_feedback
        from coldrec.rank.fusion import (
            FusionWeights, catalog_feedback, catalog_lexical_features, content_features, fit_fusion, fused_scores,
            history_vectors, signal_features, weighted_signals,
        )  # fmt: skip
        from coldrec.rank.lexical import LexicalVectors
        from coldrec.rank.signals import BehaviourSignals

        source = self.fused_source()
        encoder, vectors = self.encoder(source), self.item_vectors(source, items)
        item_ids = items["item_id"].tolist()
        # EASE's lambda: the one the EASE baseline chose on validation (its fit is cached).
        self.build("ease", items, train, valid, tune_train)
        lam = self.chosen["ease"]["chosen"]
        signals = BehaviourSignals.fit(train if tune_train is None else tune_train, item_ids, ease_lambda=lam,
                                       rp3=self.cfg.fused_rp3)
        texts = items["text"].tolist()
        # word overlap: fit on item texts, no interaction
        vocabulary = LexicalVectors.fit_if_any(texts) if self.cfg.fused_lexical else None
        lexical = None if vocabulary is None else vocabulary.transform(texts)
        if valid is None or valid.empty:
            weights, chosen, sequential = FusionWeights(), {"on": "no validation examples: content only"}, None
        else:
            sequential = (self.sequential(item_ids, train if tune_train is None else tune_train, valid)
                          if self.cfg.fused_sequential else None)
            weights, chosen = fit_fusion(signals, encoder, vectors, item_ids, valid, self.cfg.itemknn_decays,
                                         batch_size=self.cfg.batch_size, max_users=self.cfg.tune_max_users,
                                         seed=self.cfg.seed, lexical_rows=lexical, sequential=sequential,
                                         softmax_start=self.cfg.fused_softmax_start,
                                         feedback=self.cfg.fused_feedback, rp3=self.cfg.fused_rp3)
        if sequential is not None:
            chosen["sasrec"] = {k: sequential.report[k] for k in ("best_epoch", "epochs_run", "seconds")}
        self.chosen["fused"] = {"chosen": weights.model_dump(), "content": source, "ease_lambda": lam, **chosen}
        text_weights = None
        if self.cfg.fused_free_text and free_text_valid is not None and not free_text_valid.empty:
            text_weights, text_chosen = fit_text_fusion(
                signals, encoder, vectors, item_ids, free_text_valid, vocabulary, lexical,
                batch_size=self.cfg.batch_size, max_users=self.cfg.tune_max_users, seed=self.cfg.seed,
                softmax_start=self.cfg.fused_softmax_start)
            self.chosen["fused"]["free_text"] = {"chosen": text_weights.nonzero, **text_chosen}
        if tune_train is not None:
            signals = BehaviourSignals.fit(train, item_ids, decay=signals.decay, ease_lambda=lam, rp3=bool(weights.rp3))
            if sequential is not None and weights.uses_sequential:  # as long as validation chose
                sequential = self.sequential(item_ids, train, None, epochs=sequential.report["best_epoch"])
        cols = signals.columns(item_ids)
        position = {item_id: i for i, item_id in enumerate(item_ids)}

        def score(batch: pd.DataFrame) -> np.ndarray:
            content = encoder.encode_users(batch["profile_text"].tolist(), batch_size=self.cfg.batch_size) @ vectors.T
            histories = batch["history"].tolist()
            near = content_features(history_vectors(histories, vectors, position), vectors, signals.decay)
            if lexical is not None:
                near.update(catalog_lexical_features(histories, lexical, position, signals.decay))
            if sequential is not None and weights.uses_sequential:
                near["sasrec"] = sequential.scores(histories, sequential.columns(item_ids))
            if weights.uses_history_feedback:
                near["feedback"] = catalog_feedback(signals, cols, content, histories, position)
            signal = signal_features(signals, histories, cols, weighted_signals(weights))  # no table at weight 0
            scores = fused_scores(content, {**signal, **near}, weights)
            if text_weights is not None and "free_text" in batch:
                alone = np.array([not len(h) and isinstance(f, str) and bool(f)
                                  for h, f in zip(histories, batch["free_text"])], dtype=bool)
                if alone.any():
                    words = (None if vocabulary is None else
                             query_words(vocabulary.transform(batch["free_text"][alone].tolist()), lexical))
                    feedback = (pseudo_history(signals, cols, content[alone], words)
                                if uses_feedback(text_weights) else None)
                    features = text_features(signals, cols, words, feedback)
                    scores[alone] = fused_scores(content[alone], features, text_weights)
            return scores

        return score


def _fingerprint(df: pd.DataFrame | None) -> tuple | None:
    """A cheap content key of an examples or items table (ids and targets, not histories)."""
    if df is None:
        return None
    cols = [c for c in ("user_id", "item_id", "target") if c in df]
    return (len(df), int(pd.util.hash_pandas_object(df[cols], index=False).sum()))
