"""Does a change to the fused reranker pay? Held-out validation users decide, never test.

    python benchmarks/fusion_ablation.py --config configs/amazon-scientific.yaml \
        --model artifacts/runs/amazon-scientific-cpu/best_model --repeats 3

The validation users are split at random into a tuning part (``--tune-users``, as the shipped
``fit_fusion`` uses) and a held-out part. Each way of combining the signals learns on the tuning
part, with the signals fit on the training examples, and is scored on the held-out part over the
whole catalog. Repeats draw new splits, so the spread shows how much of a difference is the weight
search's noise. Variants:

- ``content``: the profile model alone.
- ``linear, coordinate ascent``: what ships (:func:`coldrec.rank.fusion.fit_fusion`: EASE's lambda,
  the history decay and the weights chosen by NDCG@10, by coordinate ascent from content alone and
  from the softmax fit), word-overlap features included, and SASRec when ``eval.fused_sequential``.
- ``linear, coordinate ascent from content alone``: the search before it also started from the
  softmax fit of every feature (``eval.fused_softmax_start=false``).
- ``linear, coordinate ascent, no word overlap``: the same search without the TF-IDF word-overlap
  features (:mod:`coldrec.rank.lexical`; ``eval.fused_lexical=false``).
- ``linear, coordinate ascent, with SASRec`` (or ``no SASRec`` when ``eval.fused_sequential=true``):
  the same search with the other setting of the SASRec feature (:mod:`coldrec.rank.sequential`).
  The SASRec is trained on the training examples, its epoch chosen on the tuning part only.
- ``linear, coordinate ascent, with feedback`` (or ``no feedback`` when ``eval.fused_feedback=true``): the
  same search with the other setting of the history users' pseudo-relevance feedback
  (:func:`coldrec.rank.feedback.history_feedback`).
- ``linear, coordinate ascent, with RP3beta`` (or ``no RP3beta`` when ``eval.fused_rp3=true``): the same
  search with the other setting of the ``rp3`` feature (:class:`coldrec.rank.signals.BehaviourSignals`).
- ``linear, softmax cross-entropy``: the same linear score, its weights (content's included) fit
  by L-BFGS on the full-catalog softmax loss of the targets: convex, so no search path.
- ``... + user-kNN``: that fit with one more feature, user-based CF (the similarity-weighted item
  sets of the ``--user-knn`` most similar training users, never the user's own).
- ``LightGBM lambdarank, top-N``: a gradient-boosted ranker over the shipped score's top
  ``--candidates`` items with every feature, the shipped score and its rank (needs ``lightgbm``:
  ``pip install -e ".[bench]"``; skipped otherwise).

Writes benchmarks/results/<name>.json (rows of dataset, variant, repeat, metric, value) and the
matching BENCHMARKS.md section. The history decay of every variant is the one the shipped search
chose on the same tuning part.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from coldrec.bench import record  # noqa: E402
from coldrec.config import load_config  # noqa: E402
from coldrec.eval.baselines import history_weights, user_item_matrix  # noqa: E402
from coldrec.data.processed import load_examples, load_items  # noqa: E402
from coldrec.eval.methods import Methods  # noqa: E402
from coldrec.eval.metrics import rank_metrics, target_ranks  # noqa: E402
from coldrec.rank.fusion import (  # noqa: E402
    FusionWeights, catalog_feedback, catalog_lexical_features, content_features, fit_fusion, fused_scores,
    history_vectors, signal_features, signal_names,
)
from coldrec.rank.lexical import LexicalVectors  # noqa: E402
from coldrec.rank.sequential import SequentialSignal  # noqa: E402
from coldrec.rank.signals import BehaviourSignals  # noqa: E402

METRICS = ("ndcg@10", "recall@10")
VARIANTS = ("content-start", "no-words", "sasrec", "feedback", "rp3", "softmax", "user-knn", "lightgbm")  # besides content and the shipped search
log = logging.getLogger("fusion_ablation")


def user_knn(train: pd.DataFrame, item_ids: list[str], queries: pd.DataFrame, neighbours: int) -> np.ndarray:
    """(queries, items) user-based CF: the cosine-weighted mean item set of each query history's
    ``neighbours`` most similar training users, the query's own training rows excluded."""
    x, users = user_item_matrix(train, item_ids, return_users=True)  # (training users, items) 0/1
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    q = sp.csr_matrix(history_weights(queries["history"].tolist(), position, len(item_ids)))  # 0/1 at decay 1

    def unit(m: sp.csr_matrix) -> sp.csr_matrix:
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return (sp.diags(1.0 / np.maximum(norms, 1e-9)) @ m).tocsr()

    xu, qu, dense = unit(x), unit(q), x.toarray()
    own = pd.Series(np.arange(len(users)), index=users).reindex(queries["user_id"]).to_numpy()
    out = np.zeros((len(queries), len(item_ids)), dtype=np.float32)
    for lo in range(0, len(queries), 1000):
        sims = (qu[lo : lo + 1000] @ xu.T).toarray()
        mine = own[lo : lo + 1000]
        known = ~np.isnan(mine)
        sims[np.flatnonzero(known), mine[known].astype(np.int64)] = 0.0  # never the user's own items
        k = min(neighbours, sims.shape[1])
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1 : k]  # the k-th largest (ties all kept)
        sims[sims < kth] = 0.0
        out[lo : lo + 1000] = sims @ dense / np.maximum(sims.sum(axis=1, keepdims=True), 1e-9)
    return out


def softmax_weights(stack: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(features,) weights minimising the full-catalog softmax cross-entropy of ``targets``."""
    import torch

    x, y = torch.from_numpy(np.ascontiguousarray(stack)), torch.from_numpy(targets).long()
    w = torch.zeros(stack.shape[-1])
    w[0] = 20.0  # content, at the profile model's temperature
    w.requires_grad_(True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w, y)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def top_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """NDCG@10 and Recall@10 of reranked candidates (queries, N); a target outside them counts 0."""
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = np.take_along_axis(labels, order, axis=1)  # (queries, N) 1 at the target's place
    ranks = np.where(hits.any(axis=1), hits.argmax(axis=1), np.inf)
    metrics = rank_metrics(ranks, [10])
    return {m: metrics[m] for m in METRICS}


def lightgbm_variant(stack: np.ndarray, linear: np.ndarray, targets: np.ndarray, tune: np.ndarray,
                     held: np.ndarray, candidates: int, seed: int) -> dict[str, float]:
    import lightgbm as lgb

    top = np.argsort(-linear, axis=1, kind="stable")[:, :candidates]  # (queries, N)
    rows = np.arange(len(top))[:, None]
    ranks = np.broadcast_to(np.arange(candidates, dtype=np.float32), top.shape)
    x = np.concatenate([stack[rows, top], linear[rows, top][..., None], ranks[..., None]], axis=-1)
    y = (top == targets[:, None]).astype(np.float32)
    fit = tune[y[tune].sum(axis=1) > 0]  # queries without the target among the candidates teach nothing
    params = dict(objective="lambdarank", metric="ndcg", eval_at=[10], learning_rate=0.05, num_leaves=7,
                  min_data_in_leaf=200, lambda_l2=10.0, bagging_fraction=0.8, bagging_freq=1,
                  verbose=-1, num_threads=2, seed=seed)
    data = lgb.Dataset(x[fit].reshape(-1, x.shape[-1]), y[fit].reshape(-1), group=[candidates] * len(fit))
    model = lgb.train(params, data, num_boost_round=200)
    return top_metrics(model.predict(x[held].reshape(-1, x.shape[-1])).reshape(-1, candidates), y[held])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", default=None, help="fine-tuned model folder (default: the untrained backbone)")
    parser.add_argument("--tune-users", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--user-knn", type=int, default=50, help="neighbours of the user-kNN feature")
    parser.add_argument("--candidates", type=int, default=100, help="LightGBM reranks this many")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)} (content and the shipped search always run)")
    parser.add_argument("--name", default="fusion-ablation", help="results file and BENCHMARKS.md section")
    parser.add_argument("--root", default=".")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    variants = set(args.variants.split(",")) - {""}
    if variants - set(VARIANTS):
        parser.error(f"unknown variants {sorted(variants - set(VARIANTS))}; choose from {VARIANTS}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.time()

    cfg = load_config(args.config, args.overrides)
    pdir = cfg.data.processed_dir
    items = load_items(pdir).sort_values("item_id", kind="stable").reset_index(drop=True)
    item_ids = items["item_id"].tolist()
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    train = load_examples(pdir, "train")
    valid = load_examples(pdir, "valid")
    valid = valid[valid["target"].isin(position)].reset_index(drop=True)
    targets = valid["target"].map(position).to_numpy()
    methods = Methods(cfg.eval, cfg.model, args.model)
    source = methods.fused_source()
    encoder, vectors = methods.encoder(source), methods.item_vectors(source, items)
    content = encoder.encode_users(valid["profile_text"].tolist(), batch_size=cfg.eval.batch_size) @ vectors.T
    histories = valid["history"].tolist()
    near_items = history_vectors(histories, vectors, position)
    vocabulary = LexicalVectors.fit_if_any(items["text"].tolist())  # as the fused method fits it
    lexical = None if vocabulary is None else vocabulary.transform(items["text"].tolist())
    extra = user_knn(train, item_ids, valid, args.user_knn) if "user-knn" in variants else None
    tie_order = np.random.default_rng(cfg.eval.seed).permutation(len(item_ids))
    have_lightgbm = "lightgbm" in variants and importlib.util.find_spec("lightgbm") is not None
    if "lightgbm" in variants and not have_lightgbm:
        log.warning("lightgbm is not installed: the LightGBM variant is skipped")

    def full(scores: np.ndarray, rows: np.ndarray) -> dict[str, float]:
        metrics = rank_metrics(target_ranks(scores[rows], targets[rows], tie_order), [10])
        return {m: metrics[m] for m in METRICS}

    rows: list[dict] = []
    for repeat in range(args.repeats):
        order = np.random.default_rng(cfg.eval.seed + repeat).permutation(len(valid))
        tune, held = np.sort(order[: args.tune_users]), np.sort(order[args.tune_users :])
        methods.build("ease", items, train, valid.iloc[tune])  # EASE's lambda, chosen on the tuning part
        lam = methods.chosen["ease"]["chosen"]
        signals = BehaviourSignals.fit(train, item_ids, ease_lambda=lam,  # each fit below sets its decay
                                       rp3=cfg.eval.fused_rp3 or "rp3" in variants)
        sequential = (SequentialSignal.fit(train, item_ids, cfg.eval.sequential, valid.iloc[tune])
                      if cfg.eval.fused_sequential or "sasrec" in variants else None)  # epoch chosen on the tuning part

        def shipped(lexical_rows: sp.csr_matrix | None, sequential: SequentialSignal | None,
                    softmax_start: bool = cfg.eval.fused_softmax_start, feedback: bool = cfg.eval.fused_feedback,
                    rp3: bool = cfg.eval.fused_rp3) -> tuple[FusionWeights, dict, dict[str, np.ndarray]]:
            """fit_fusion on the tuning part; (weights, report, every feature at the chosen decay)."""
            weights, report = fit_fusion(signals, encoder, vectors, item_ids, valid.iloc[tune],
                                         cfg.eval.itemknn_decays, batch_size=cfg.eval.batch_size, max_users=None,
                                         seed=cfg.eval.seed, lexical_rows=lexical_rows, sequential=sequential,
                                         softmax_start=softmax_start, feedback=feedback, rp3=rp3)
            features = {**signal_features(signals, histories, signals.columns(item_ids), signal_names(rp3)),
                        **content_features(near_items, vectors, signals.decay)}
            if lexical_rows is not None:
                features.update(catalog_lexical_features(histories, lexical_rows, position, signals.decay))
            if sequential is not None:
                features["sasrec"] = sequential.scores(histories, sequential.columns(item_ids))
            if feedback:
                features["feedback"] = catalog_feedback(signals, signals.columns(item_ids), content, histories, position)
            return weights, report, features

        shipped_sequential = sequential if cfg.eval.fused_sequential else None  # the "sasrec" variant toggles it
        weights, report, features = shipped(lexical, shipped_sequential)
        names = [n for n in FusionWeights.model_fields if n in features and np.ptp(features[n]) > 0]
        stack = np.stack([content, *(np.broadcast_to(features[n], content.shape) for n in names)], axis=-1)
        linear = fused_scores(content, features, weights)
        results = {"content": full(content, held), "linear, coordinate ascent (shipped)": full(linear, held)}
        if cfg.eval.fused_softmax_start and "content-start" in variants:  # the search before 2026-12-02
            plain_weights, _, plain_features = shipped(lexical, shipped_sequential, softmax_start=False)
            results["linear, coordinate ascent from content alone"] = full(
                fused_scores(content, plain_features, plain_weights), held)
        if lexical is not None and "no-words" in variants:  # the same search without them (eval.fused_lexical=false)
            plain_weights, _, plain_features = shipped(None, shipped_sequential)
            results["linear, coordinate ascent, no word overlap"] = full(
                fused_scores(content, plain_features, plain_weights), held)
        if "sasrec" in variants:  # the other setting of eval.fused_sequential
            toggled = None if shipped_sequential else sequential
            plain_weights, _, plain_features = shipped(lexical, toggled)
            results[f"linear, coordinate ascent, {'with' if toggled else 'no'} SASRec"] = full(
                fused_scores(content, plain_features, plain_weights), held)
        if "feedback" in variants:  # the other setting of eval.fused_feedback
            toggled = not cfg.eval.fused_feedback
            plain_weights, _, plain_features = shipped(lexical, shipped_sequential, feedback=toggled)
            results[f"linear, coordinate ascent, {'with' if toggled else 'no'} feedback"] = full(
                fused_scores(content, plain_features, plain_weights), held)
        if "rp3" in variants:  # the other setting of eval.fused_rp3
            toggled = not cfg.eval.fused_rp3
            plain_weights, _, plain_features = shipped(lexical, shipped_sequential, rp3=toggled)
            results[f"linear, coordinate ascent, {'with' if toggled else 'no'} RP3beta"] = full(
                fused_scores(content, plain_features, plain_weights), held)
        if "softmax" in variants:
            w = softmax_weights(stack[tune], targets[tune])
            results["linear, softmax cross-entropy"] = full(stack @ w, held)
        if extra is not None:
            with_knn = np.concatenate([stack, extra[..., None]], axis=-1)
            w = softmax_weights(with_knn[tune], targets[tune])
            results[f"linear, softmax cross-entropy + user-kNN ({args.user_knn})"] = full(with_knn @ w, held)
        if have_lightgbm:
            results[f"LightGBM lambdarank, top-{args.candidates}"] = lightgbm_variant(
                stack, linear, targets, tune, held, args.candidates, cfg.eval.seed)
        for variant, metrics in results.items():
            log.info("repeat %d %s: %s", repeat, variant, metrics)
            rows += [{"benchmark": "fusion-ablation", "dataset": cfg.data.scene_name, "variant": variant,
                      "repeat": repeat, "metric": m, "value": round(v, 6), "tune_users": len(tune),
                      "heldout_users": len(held), "ease_lambda": lam, "decay": report["decay"],
                      "model": args.model or source} for m, v in metrics.items()]

    table = pd.DataFrame(rows)
    lines = [f"{cfg.data.scene_name}: {len(valid)} validation users, {args.repeats} random splits into "
             f"{args.tune_users} to tune on and the rest held out; signals fit on the training examples; "
             f"full ranking over {len(item_ids)} items; model `{args.model or source}`; "
             f"{time.time() - started:.0f} s.", "",
             "| variant | " + " | ".join(f"held-out {m} (mean, min-max)" for m in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for variant, group in table.groupby("variant", sort=False):
        cells = []
        for m in METRICS:
            v = group[group["metric"] == m]["value"]
            cells.append(f"{v.mean():.4f} ({v.min():.4f}-{v.max():.4f})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    command = "python benchmarks/fusion_ablation.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = record(args.name, rows, text, command, root=args.root)
    print(text)
    print(f"recorded {len(rows)} rows in {path} and BENCHMARKS.md")


if __name__ == "__main__":
    main()
