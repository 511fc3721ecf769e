"""SASRec (Kang & McAuley, 2018) over item ids: the order of a user's history as a behavioural signal.

A causal transformer reads the user's item ids, oldest first; its output at the newest position,
dotted with the item embeddings (tied input and output), gives every catalog item's logit of
coming next. Trained with the full-catalog softmax cross-entropy at every position of the training
users' sequences (Petrov & Macdonald, 2023, find this beats SASRec's sampled binary loss).

The fused reranker uses it as the ``sasrec`` feature: the model's probability of each item
coming next, divided by the most likely item's, so it lies in [0, 1] and does not depend on which
candidates are compared. Items it never saw (added after the fit) and histories with no item it
knows score 0, like the other behavioural signals. It needs only torch, is a few hundred thousand
parameters, and trains in minutes on two cores for a catalog of a few thousand items.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from coldrec.config import SequentialConfig
from coldrec.rank.fusion import SEQUENTIAL_FILE
log = logging.getLogger(__name__)


class SASRec(nn.Module):
    """Item ids (batch, max_len), 0 = padding on the left, ids 1..n_items -> (batch, max_len, dim)."""

    def __init__(self, n_items: int, cfg: SequentialConfig):
        super().__init__()
        self.n_items, self.max_len = n_items, cfg.max_len
        self.items = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        self.positions = nn.Embedding(cfg.max_len, cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=cfg.dim, dropout=cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        length = seq.shape[1]
        x = self.items(seq) * self.items.embedding_dim**0.5 + self.positions.weight[-length:]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=seq.device), diagonal=1)
        x = self.blocks(self.dropout(x), mask=causal, src_key_padding_mask=seq == 0)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., n_items) over ids 1..n_items (catalog column = id - 1)."""
        return hidden @ self.items.weight[1:].T


def _pad(rows: Sequence[Sequence[int]], length: int) -> np.ndarray:
    """Left-padded (rows, length) of each row's newest ``length`` ids."""
    out = np.zeros((len(rows), length), dtype=np.int64)
    for r, ids in enumerate(rows):
        ids = list(ids)[-length:]
        if ids:
            out[r, -len(ids):] = ids
    return out


def training_sequences(train: pd.DataFrame, position: dict[str, int]) -> list[list[int]]:
    """Each training user's whole sequence (their longest history plus its target) as ids 1..n;
    items outside the catalog are dropped."""
    longest = train.loc[train["history"].map(len).groupby(train["user_id"]).idxmax()]
    return [[position[str(i)] + 1 for i in [*hist, target] if str(i) in position]
            for hist, target in zip(longest["history"], longest["target"])]


class SequentialSignal:
    """A fitted SASRec and the catalog ids it knows, scoring histories against catalog columns."""

    def __init__(self, item_ids: Sequence[str], model: SASRec, cfg: SequentialConfig, report: dict | None = None):
        self.item_ids = [str(i) for i in item_ids]
        self.position = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self.model, self.cfg, self.report = model.eval(), cfg, report or {}

    # ---- fitting ------------------------------------------------------------------------
    @classmethod
    def fit(cls, train: pd.DataFrame, item_ids: Sequence[str], cfg: SequentialConfig | None = None,
            valid: pd.DataFrame | None = None) -> "SequentialSignal":
        """Train on ``train`` examples (user_id, history, target); with ``valid`` examples, keep the
        epoch with the best NDCG@10 of their targets and stop after ``patience`` checks without a
        better one."""
        cfg = cfg or SequentialConfig()
        torch.manual_seed(cfg.seed)
        item_ids = [str(i) for i in item_ids]
        position = {item_id: i for i, item_id in enumerate(item_ids)}
        sequences = [s for s in training_sequences(train, position) if len(s) >= 2]
        data = torch.from_numpy(_pad(sequences, cfg.max_len + 1))  # inputs [:, :-1], next items [:, 1:]
        model = SASRec(len(item_ids), cfg)
        signal = cls(item_ids, model, cfg)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        best: tuple[float, int, dict] | None = None
        history, started, checks_since_best = [], time.time(), 0
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            total, count = 0.0, 0
            for idx in torch.randperm(len(data), generator=generator).split(cfg.batch_size):
                batch = data[idx]
                inputs, nexts = batch[:, :-1], batch[:, 1:]
                keep = (inputs > 0) & (nexts > 0)
                hidden = model(inputs)[keep]
                loss = nn.functional.cross_entropy(model.logits(hidden), nexts[keep] - 1)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * int(keep.sum()), count + int(keep.sum())
            if valid is None or valid.empty:
                continue
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                model.eval()
                ndcg = signal.validation_ndcg(valid)
                history.append({"epoch": epoch, "loss": round(total / max(count, 1), 4), "ndcg@10": round(ndcg, 5)})
                log.info("sasrec epoch %d: loss %.4f, validation ndcg@10 %.4f", epoch, total / max(count, 1), ndcg)
                if best is None or ndcg > best[0]:
                    best, checks_since_best = (ndcg, epoch, {k: v.clone() for k, v in model.state_dict().items()}), 0
                else:
                    checks_since_best += 1
                    if checks_since_best >= cfg.patience:
                        break
        if best is not None:
            model.load_state_dict(best[2])
        model.eval()
        signal.report = {"sequences": len(sequences), "epochs_run": epoch, "seconds": round(time.time() - started, 1),
                         "best_epoch": best[1] if best else epoch, "validation": history}
        return signal

    def validation_ndcg(self, valid: pd.DataFrame) -> float:
        from coldrec.eval.metrics import rank_metrics, target_ranks

        valid = valid[valid["target"].isin(self.position)]
        targets = valid["target"].map(self.position).to_numpy()
        tie_order = np.random.default_rng(0).permutation(len(self.item_ids))
        ranks = [target_ranks(self.log_probs(valid["history"].iloc[lo : lo + 1024].tolist()), targets[lo : lo + 1024],
                              tie_order) for lo in range(0, len(valid), 1024)]
        return rank_metrics(np.concatenate(ranks), [10])["ndcg@10"] if ranks else 0.0

    # ---- features -----------------------------------------------------------------------
    def log_probs(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """(queries, items) log P(item comes next | history); a history with no known item: all 0."""
        return self._log_probs(histories)[0]

    @torch.no_grad()
    def _log_probs(self, histories: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(log P as :meth:`log_probs`, (queries,) whether the history holds an item the model knows)."""
        rows = [[self.position[str(i)] + 1 for i in hist if str(i) in self.position] for hist in histories]
        seq = torch.from_numpy(_pad(rows, self.model.max_len))
        known = (seq > 0).any(dim=1).numpy()
        out = np.zeros((len(rows), len(self.item_ids)), dtype=np.float32)
        if known.any():
            hidden = self.model(seq[torch.from_numpy(known)])[:, -1]
            out[known] = torch.log_softmax(self.model.logits(hidden), dim=-1).numpy()
        return out, known

    def scores(self, histories: Sequence[Sequence[str]], candidate_cols: np.ndarray | None = None) -> np.ndarray:
        """(queries, candidates) P(candidate next) / P(most likely item next), in [0, 1]; all items
        when ``candidate_cols`` is None (cols: catalog rows of :attr:`item_ids`, -1 = unknown: 0)."""
        logp, known = self._log_probs(histories)
        relative = np.where(known[:, None], np.exp(logp - logp.max(axis=1, keepdims=True)), 0.0).astype(np.float32)
        if candidate_cols is None:
            return relative
        cols = np.asarray(candidate_cols)
        out = relative[:, np.maximum(cols, 0)]
        out[:, cols < 0] = 0.0
        return out

    def columns(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.array([self.position.get(str(i), -1) for i in item_ids], dtype=np.int64)

    # ---- persistence --------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        torch.save({"item_ids": self.item_ids, "config": self.cfg.model_dump(), "state": self.model.state_dict(),
                    "report": json.loads(json.dumps(self.report))}, path / SEQUENTIAL_FILE)
        return path / SEQUENTIAL_FILE

    @classmethod
    def load(cls, folder: str | Path) -> "SequentialSignal":
        saved = torch.load(Path(folder) / SEQUENTIAL_FILE, map_location="cpu", weights_only=True)
        cfg = SequentialConfig.model_validate(saved["config"])
        model = SASRec(len(saved["item_ids"]), cfg)
        model.load_state_dict(saved["state"])
        return cls(saved["item_ids"], model, cfg, saved.get("report"))
