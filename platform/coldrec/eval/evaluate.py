"""Leave-one-out, full-ranking evaluation of every method in one run.

Each method scores the whole catalog for each held-out user; the target's rank gives
Recall@K, NDCG@K and MRR. Popularity, the untrained encoder and the fine-tuned model
run on exactly the same users, so their rows are comparable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from coldrec.config import PipelineConfig
from coldrec.data.processed import check_text, load_examples, load_items
from coldrec.eval.examples import leave_one_out_training
from coldrec.eval.metrics import rank_metrics, target_ranks
from coldrec.eval.scorers import Scorer, encoder_scorer, popularity_scorer

METHODS = ("popularity", "itemknn", "ease", "bm25", "untrained-last-item", "untrained", "finetuned")


class EvalRow(BaseModel):
    method: str
    metric: str
    k: int | None
    value: float
    masked_history: bool = False


class EvalReport(BaseModel):
    dataset: str
    split: str
    users: int
    items: int
    skipped_users: int
    rows: list[EvalRow]
    model_path: str | None = None
    seconds: dict[str, float] = {}

    def value(self, method: str, metric: str, masked: bool = False) -> float:
        for r in self.rows:
            name = r.metric if r.k is None else f"{r.metric}@{r.k}"
            if r.method == method and name == metric and r.masked_history == masked:
                return r.value
        raise KeyError((method, metric, masked))

    def table(self) -> str:
        metrics = [f"{m}@{k}" for k in sorted({r.k for r in self.rows if r.k}) for m in ("recall", "ndcg")] + ["mrr"]
        keys = sorted({(r.method, r.masked_history) for r in self.rows}, key=lambda x: (x[1], _order(x[0])))
        head = f"{'method':<24}" + "".join(f"{m:>11}" for m in metrics)
        lines = [f"{self.dataset} / {self.split}: {self.users} users, full ranking over {self.items} items", head]
        for method, masked in keys:
            label = method + (" (masked)" if masked else "")
            lines.append(f"{label:<24}" + "".join(f"{self.value(method, m, masked):>11.4f}" for m in metrics))
        return "\n".join(lines)


def _order(method: str) -> int:
    return METHODS.index(method) if method in METHODS else len(METHODS)


def default_model_path(cfg: PipelineConfig) -> Path:
    return Path(cfg.train.storage_path) / cfg.train.run_name / "best_model"


def _build_scorer(method: str, cfg: PipelineConfig, items: pd.DataFrame, train: pd.DataFrame, model_path: str | None,
                  valid: pd.DataFrame | None = None, tune_train: pd.DataFrame | None = None) -> Scorer:
    from coldrec.model.encoder import TextEncoder

    item_ids = items["item_id"].tolist()
    texts = items["text"].tolist()
    if method == "popularity":
        return popularity_scorer(train, item_ids)
    if method in ("untrained", "untrained-last-item"):
        encoder = TextEncoder.load(cfg.model.backbone, model_config=cfg.model)
        return encoder_scorer(encoder, texts, cfg.eval.batch_size, last_item_only=method == "untrained-last-item",
                              item_text_by_id=dict(zip(item_ids, texts)))
    if method in ("itemknn", "ease", "bm25"):
        from coldrec.eval.methods import Methods

        # EASE's lambda and item-kNN's decay are chosen on the validation split, never on test.
        return Methods(cfg.eval, cfg.model).build(method, items, train, valid, tune_train)
    if method == "finetuned":
        if not model_path or not Path(model_path).exists():
            raise FileNotFoundError(f"no fine-tuned model at {model_path}; run `coldrec train` first or pass --model")
        scenes = items["scene"].tolist() if "scene" in items else None
        return encoder_scorer(TextEncoder.load(model_path), texts, cfg.eval.batch_size, item_ids=item_ids, scenes=scenes)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def evaluate(cfg: PipelineConfig, model_path: str | None = None) -> EvalReport:
    pdir = cfg.data.processed_dir
    check_text(pdir, cfg.model.text)  # the untrained encoder reads model.text beside the folder's profiles
    items = load_items(pdir).sort_values("item_id", kind="stable").reset_index(drop=True)
    position = {item_id: i for i, item_id in enumerate(items["item_id"])}
    examples = load_examples(pdir, cfg.eval.split)
    known = examples["target"].isin(position)
    skipped = int((~known).sum())
    examples = examples[known]
    if cfg.eval.max_users and len(examples) > cfg.eval.max_users:
        examples = examples.sample(n=cfg.eval.max_users, random_state=cfg.eval.seed)
    examples = examples.reset_index(drop=True)
    valid = load_examples(pdir, "valid")
    train, tune_train = leave_one_out_training(pdir, cfg.eval, valid)
    model_path = model_path or cfg.index.model_path or str(default_model_path(cfg))

    targets = examples["target"].map(position).to_numpy()
    tie_order = np.random.default_rng(cfg.eval.seed).permutation(len(items))
    history_cols = [np.array([position[h] for h in hist if h in position], dtype=np.int64) for hist in examples["history"]]
    rows: list[EvalRow] = []
    seconds: dict[str, float] = {}
    for method in cfg.eval.methods:
        start = time.perf_counter()
        scorer = _build_scorer(method, cfg, items, train, model_path, valid, tune_train)
        ranks = {False: [], True: []}
        for lo in range(0, len(examples), 512):
            batch = examples.iloc[lo : lo + 512]
            scores = np.array(scorer(batch), dtype=np.float32)  # (batch, items)
            ranks[False].append(target_ranks(scores, targets[lo : lo + 512], tie_order))
            if cfg.eval.mask_history:
                for r, hist in enumerate(history_cols[lo : lo + 512]):
                    scores[r, hist[hist != targets[lo + r]]] = -np.inf  # never hide the target itself
                ranks[True].append(target_ranks(scores, targets[lo : lo + 512], tie_order))
        for masked in (False, True) if cfg.eval.mask_history else (False,):
            for name, value in rank_metrics(np.concatenate(ranks[masked]), cfg.eval.ks).items():
                metric, _, k = name.partition("@")
                rows.append(EvalRow(method=method, metric=metric, k=int(k) if k else None, value=value, masked_history=masked))
        seconds[method] = round(time.perf_counter() - start, 1)
    report = EvalReport(dataset=cfg.data.scene_name, split=cfg.eval.split, users=len(examples), items=len(items),
                        skipped_users=skipped, rows=rows, model_path=model_path if "finetuned" in cfg.eval.methods else None,
                        seconds=seconds)
    out = Path(cfg.eval.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.model_dump(), indent=2))
    return report
