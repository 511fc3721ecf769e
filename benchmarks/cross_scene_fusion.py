"""Goal 2 (unseen scene) with the fusion's text-only features, weights learned on another scene.

    python benchmarks/cross_scene_fusion.py --target configs/amazon-scientific.yaml --tune configs/amazon-office.yaml

Nothing here sees an interaction of the target scene except the test users' own histories, which
every method is given: the profile model (``--model``, default the untrained backbone) is scored
with the features of :mod:`coldrec.rank.fusion` that need no interaction data, ``unseen`` (a mask
of the user's own history), the cosines with the history's item vectors and the same comparisons
over TF-IDF word overlap (:mod:`coldrec.rank.lexical`, the vocabulary fitted on each scene's own
item texts). Their weights and the history decay are chosen by NDCG@10 on ``--tune-users``
validation users of the ``--tune`` scene, then applied unchanged to every test user of the
target, full ranking over its catalog. Rows: content alone, the fusion without the words and with
them (searched from content alone), and with them by the two-start search of ``fit_fusion``
(also from :func:`coldrec.rank.fusion.softmax_weights`, the better on the tuning scene:
:func:`coldrec.rank.fusion.search_from_softmax`). With ``--in-scene``, one more row scores the same
features with weights chosen on the *target's* own validation users: not a goal-2 figure (it uses
target interactions to choose weights), but an estimate of what better-travelling weights could give,
so that a gap left by the text-only features is told apart from one left by the transfer of weights.
Writes benchmarks/results/<name>.json and the matching BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from coldrec.bench import record  # noqa: E402
from coldrec.config import load_config  # noqa: E402
from coldrec.data.processed import load_examples, load_items  # noqa: E402
from coldrec.eval.methods import Methods  # noqa: E402
from coldrec.eval.metrics import rank_metrics, target_ranks  # noqa: E402
from coldrec.rank.fusion import (  # noqa: E402
    FusionWeights, catalog_lexical_features, content_features, fused_scores, history_columns, history_vectors,
    learn_weights, search_from_softmax,
)
from coldrec.rank.lexical import LexicalVectors  # noqa: E402

METRICS = ("ndcg@10", "recall@10")
log = logging.getLogger("cross_scene_fusion")


class Scene:
    """One scene's catalog, encoded once: item vectors, TF-IDF rows, and per example set the content scores."""

    def __init__(self, config: str, model: str | None):
        self.cfg = load_config(config)
        self.items = load_items(self.cfg.data.processed_dir).sort_values("item_id", kind="stable")
        self.item_ids = self.items["item_id"].tolist()
        self.position = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self.methods = Methods(self.cfg.eval, self.cfg.model, model)
        self.source = self.methods.fused_source()
        self.encoder = self.methods.encoder(self.source)
        self.vectors = self.methods.item_vectors(self.source, self.items)
        texts = self.items["text"].tolist()
        self.lexical = LexicalVectors.fit(texts).transform(texts)

    def examples(self, split: str, max_users: int | None, seed: int) -> tuple[np.ndarray, list, np.ndarray]:
        """(content scores (queries, items), histories, target columns) of one split."""
        ex = load_examples(self.cfg.data.processed_dir, split)
        ex = ex[ex["target"].isin(self.position)]
        if max_users and len(ex) > max_users:
            ex = ex.sample(n=max_users, random_state=seed)
        users = self.encoder.encode_users(ex["profile_text"].tolist(), batch_size=self.cfg.eval.batch_size)
        return users @ self.vectors.T, ex["history"].tolist(), ex["target"].map(self.position).to_numpy()

    def features(self, histories: list, decay: float, words: bool) -> dict[str, np.ndarray]:
        out = content_features(history_vectors(histories, self.vectors, self.position), self.vectors, decay)
        if words:
            out.update(catalog_lexical_features(histories, self.lexical, self.position, decay))
        unseen = np.ones((len(histories), len(self.item_ids)), dtype=np.float32)
        for q, cols in enumerate(history_columns(histories, self.position)):
            unseen[q, cols] = 0.0
        out["unseen"] = unseen
        return out


def metrics(scores: np.ndarray, targets: np.ndarray, seed: int) -> dict[str, float]:
    tie_order = np.random.default_rng(seed).permutation(scores.shape[1])
    values = rank_metrics(target_ranks(scores, targets, tie_order), [10])
    return {m: values[m] for m in METRICS}


def choose(scene: Scene, content: np.ndarray, histories: list, targets: np.ndarray, words: bool,
           two_starts: bool, decays: list[float], seed: int) -> tuple[float, FusionWeights]:
    """The history decay and weights with the best NDCG@10 on ``scene``'s tuning examples."""
    best: tuple[float, float, FusionWeights] | None = None
    for decay in decays:
        features = scene.features(histories, decay, words)
        weights, report = learn_weights(content, features, targets, seed=seed)
        if two_starts:  # as fit_fusion's eval.fused_softmax_start: the better of the two searches
            weights, report = search_from_softmax(content, features, targets, weights, report, seed=seed)
        if best is None or report["ndcg@10"] > best[0]:
            best = (report["ndcg@10"], decay, weights)
    return best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="config of the scene scored (its test split)")
    parser.add_argument("--tune", required=True, help="config of the scene whose validation users choose the weights")
    parser.add_argument("--model", default=None, help="fine-tuned model folder (default: the untrained backbone)")
    parser.add_argument("--tune-users", type=int, default=2000)
    parser.add_argument("--decays", default="1.0,0.8,0.5", help="history decays searched on the tuning scene")
    parser.add_argument("--in-scene", action="store_true",
                        help="one more row whose weights are chosen on the target's own validation users: how far "
                             "the text-only features reach when no weight has to travel (not a goal-2 figure)")
    parser.add_argument("--name", default="quality-cross-scene-fusion", help="results file and BENCHMARKS.md section")
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.time()

    target, tune = Scene(args.target, args.model), Scene(args.tune, args.model)
    seed = target.cfg.eval.seed
    if target.cfg.data.scene_name == tune.cfg.data.scene_name:
        raise SystemExit("--tune must be another scene than --target: that is the point")
    t_content, t_histories, t_targets = target.examples("test", None, seed)
    v_content, v_histories, v_targets = tune.examples("valid", args.tune_users, seed)
    results = {"content": (metrics(t_content, t_targets, seed), None, None, len(v_targets))}  # variant: (metrics, chosen, tuning scene, its users)
    decays = [float(d) for d in args.decays.split(",")]
    runs = [(tune, v_content, v_histories, v_targets, words, two_starts, "")
            for words, two_starts in ((False, False), (True, False), (True, True))]
    if args.in_scene:  # the features' reach when their weights need not travel: not a goal-2 figure
        s_content, s_histories, s_targets = target.examples("valid", args.tune_users, seed)
        runs.append((target, s_content, s_histories, s_targets, True, True,
                     f", weights chosen on {target.cfg.data.scene_name} validation users (in-scene, not goal 2)"))
    for scene, content, histories, targets, words, two_starts, suffix in runs:
        decay, weights = choose(scene, content, histories, targets, words, two_starts, decays, seed)
        scores = fused_scores(t_content, target.features(t_histories, decay, words), weights)
        variant = "fused, text only, with word overlap" if words else "fused, text only"
        variant += (", two-start search" if two_starts else "") + suffix
        results[variant] = (metrics(scores, t_targets, seed), {"decay": decay, **weights.nonzero}, scene,
                            len(targets))
        log.info("%s: %s (weights %s)", variant, results[variant][0], results[variant][1])

    model = args.model or f"{target.source} ({target.cfg.model.backbone})"
    rows = [{"dataset": target.cfg.data.scene_name, "protocol": "leave-one-out" if scene is target else "cross-scene",
             "method": variant, "metric": m, "k": 10, "value": round(v, 6), "users": len(t_targets),
             "tuned_on": (scene or tune).cfg.data.scene_name, "tune_users": users, "model": model,
             "chosen": chosen}
            for variant, (values, chosen, scene, users) in results.items() for m, v in values.items()]
    lines = [f"{target.cfg.data.scene_name} test ({len(t_targets)} users, full ranking over {len(target.item_ids)} "
             f"items), weights and decay chosen on {len(v_targets)} {tune.cfg.data.scene_name} validation users; "
             f"model `{model}`; {time.time() - started:.0f} s.", "",
             "| method | " + " | ".join(METRICS) + " | chosen on the tuning scene |", "|---|" + "---|" * (len(METRICS) + 1)]
    for variant, (values, chosen, *_) in results.items():
        lines.append(f"| {variant} | " + " | ".join(f"{values[m]:.4f}" for m in METRICS) + f" | {chosen or '-'} |")
    text = "\n".join(lines)
    command = "python benchmarks/cross_scene_fusion.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = record(args.name, rows, text, command, root=args.root)
    print(text)
    print(f"recorded {len(rows)} rows in {path} and BENCHMARKS.md")


if __name__ == "__main__":
    main()
