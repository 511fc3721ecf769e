"""Exact vs approximate item search at catalog scale: QPS and recall@10 against exact search.

    python benchmarks/index_bench.py                       # 1,000,000 items x 384 dims (run on a quiet machine)
    python benchmarks/index_bench.py --items 20000 --exact-max-items 1000 --root /tmp/idx   # smoke run
    python benchmarks/index_bench.py --hnsw                # also HNSW32 (slow to build at 1M on few cores)

Both indexes are built by ``ItemIndex.build``, the code path of the index build job: "Flat" for
exact search and the "auto" factory (IVF above ``--exact-max-items``, trained on a bounded
sample, nprobe tuned to recall@10 >= 0.95 on catalog vectors). They are then measured on a
separate set of queries drawn from the same distribution but not in the catalog: QPS through
``ItemIndex.search`` (batches of ``--batch`` queries, FAISS's OpenMP threads as reported), recall@10
against the exact top 10, build and training time, and the serialized index size.

Synthetic data (seed ``--seed``, default 0). Uniform random unit vectors have no neighbourhoods
(every pair is nearly orthogonal in 384 dims), so they say nothing about an embedding catalog.
Embeddings of text cluster by topic, topics overlap, and the vectors vary along far fewer than
384 directions. So: 4,096 topic centres are drawn in a 64-dimensional latent space and mapped into
384 dims by one fixed random linear map; topic sizes are log-normal (a few big topics, many small
ones); an item is its topic centre plus latent noise of about the centres' spread (so topics
overlap and a neighbour list often crosses topics) plus a little full-dimensional noise, then
normalised. Queries are fresh draws from the same mixture.

Rows go to benchmarks/results/serving.json (suite "index") and the "serving-index" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

import faiss  # noqa: E402
import pandas as pd  # noqa: E402

from coldrec.bench import record  # noqa: E402
from coldrec.config import IndexConfig  # noqa: E402
from coldrec.index.item_index import ItemIndex  # noqa: E402

TOPICS, LATENT = 4096, 64
TOPIC_SPREAD, ITEM_SPREAD, ISOTROPIC = 1.0, 0.8, 0.15  # in units of the latent standard deviation


def synthetic_vectors(n: int, dim: int, seed: int, stream: int, chunk: int = 100_000) -> np.ndarray:
    """(n, dim) float32 unit vectors from the topic mixture; ``stream`` separates catalog from queries."""
    base = np.random.default_rng(seed)
    mapping = base.standard_normal((LATENT, dim)).astype(np.float32) / np.sqrt(LATENT)  # (latent, dim)
    centres = base.standard_normal((TOPICS, LATENT)).astype(np.float32) * TOPIC_SPREAD  # (topics, latent)
    sizes = base.lognormal(0.0, 1.0, TOPICS)
    rng = np.random.default_rng([seed, stream])
    topic = rng.choice(TOPICS, size=n, p=sizes / sizes.sum())
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):  # chunks keep the float64 temporaries small at 1M items
        t = topic[start:start + chunk]
        latent = centres[t] + ITEM_SPREAD * rng.standard_normal((len(t), LATENT), dtype=np.float32)
        x = latent @ mapping + ISOTROPIC * rng.standard_normal((len(t), dim), dtype=np.float32)  # (chunk, dim)
        out[start:start + chunk] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def timed_search(index: ItemIndex, queries: np.ndarray, batch: int) -> tuple[list[set[str]], float]:
    """Top-10 id sets per query and queries per second over all batches (after one warm-up batch)."""
    index.search(queries[:batch], k=10)
    start = time.perf_counter()
    found: list[set[str]] = []
    for i in range(0, len(queries), batch):
        found += [{item for item, _ in hits} for hits in index.search(queries[i:i + batch], k=10)]
    return found, len(queries) / (time.perf_counter() - start)


def run(items: int, dim: int, num_queries: int, batch: int, exact_max_items: int, hnsw: bool, seed: int) -> list[dict]:
    start = time.perf_counter()
    vectors = synthetic_vectors(items, dim, seed, stream=1)  # (items, dim)
    queries = synthetic_vectors(num_queries, dim, seed, stream=2)  # (queries, dim)
    rows = pd.DataFrame({"item_id": [f"item{i}" for i in range(items)]})
    print(f"data: {items} x {dim} in {time.perf_counter() - start:.1f}s", flush=True)

    config = IndexConfig(exact_max_items=exact_max_items, seed=seed)
    builds = [("Flat", "Flat")] + [("auto", "auto")] + ([("HNSW32", "HNSW32")] if hnsw else [])
    results, truth, exact_qps = [], None, None
    for label, factory in builds:
        start = time.perf_counter()
        index = ItemIndex.build(rows, vectors, factory=factory, config=config)
        build_s = time.perf_counter() - start
        params = index.meta.get("search_params", {})
        setting = " ".join([index.meta["factory"]] + [f"{k}={v}" for k, v in params.items()])
        found, qps = timed_search(index, queries, batch)
        truth = truth or found  # the Flat index is built first
        exact_qps = exact_qps or qps
        recall = float(np.mean([len(a & b) / 10 for a, b in zip(found, truth)]))
        timings = index.meta.get("build_seconds", {})
        figures = {"qps": qps, "recall_at_10": recall, "speedup_vs_exact": qps / exact_qps, "build_s": build_s,
                   "train_s": timings.get("train_s", 0.0), "tune_s": timings.get("tune_s", 0.0),
                   "index_mb": faiss.serialize_index(index._index).nbytes / 2**20}
        if "tuning" in index.meta:
            figures["tuning_recall_at_10"] = index.meta["tuning"]["recall_at_k"]
        print(f"{setting}: " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()), flush=True)
        results += [{"setting": setting, "role": label, "metric": k, "value": round(float(v), 4)} for k, v in figures.items()]
        del index
    common = {"suite": "index", "benchmark": "index", "items": items, "dim": dim, "queries": num_queries,
              "batch": batch, "threads": faiss.omp_get_max_threads(), "seed": seed}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    results.append({"setting": "process", "role": "process", "metric": "peak_rss_mb", "value": round(rss, 1)})
    return [{**common, **row} for row in results]


def markdown(rows: list[dict], target: float = 0.95, speedup: float = 10.0) -> str:
    first = rows[0]
    table = {}
    for row in rows:
        if row["role"] != "process":
            table.setdefault((row["role"], row["setting"]), {})[row["metric"]] = row["value"]
    lines = [f"{first['items']:,} synthetic {first['dim']}-d items (topic mixture, seed {first['seed']}); "
             f"{first['queries']:,} held-out queries in batches of {first['batch']}; "
             f"{first['threads']} FAISS threads; recall@10 against exact search.", "",
             "| index | QPS | x exact | recall@10 | build s | train s | tune s | index MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (_, setting), m in table.items():
        lines.append(f"| {setting} | {m['qps']:,.0f} | {m['speedup_vs_exact']:.1f} | {m['recall_at_10']:.4f} | "
                     f"{m['build_s']:.1f} | {m['train_s']:.1f} | {m['tune_s']:.1f} | {m['index_mb']:,.0f} |")
    auto = next((m | {"setting": s} for (role, s), m in table.items() if role == "auto"), None)
    peak = next(r["value"] for r in rows if r["metric"] == "peak_rss_mb")
    lines.append(f"\nPeak process memory: {peak:,.0f} MB.")
    if auto is not None:
        met = auto["recall_at_10"] >= target and auto["speedup_vs_exact"] >= speedup
        lines.append(f"\nGoal (auto index: recall@10 >= {target} at >= {speedup:.0f}x exact QPS): "
                     f"**{'met' if met else 'not met'}** ({auto['setting']}: recall@10 {auto['recall_at_10']:.4f}, "
                     f"{auto['speedup_vs_exact']:.1f}x).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (never the tuning ones)")
    parser.add_argument("--batch", type=int, default=1000, help="queries per search call")
    parser.add_argument("--exact-max-items", type=int, default=IndexConfig().exact_max_items)
    parser.add_argument("--hnsw", action="store_true", help="also build and measure HNSW32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--machine", default=None, help="override the detected machine description")
    parser.add_argument("--root", default=".", help="where benchmarks/results/ and BENCHMARKS.md live")
    args = parser.parse_args()
    rows = run(args.items, args.dim, args.queries, args.batch, args.exact_max_items, args.hnsw, args.seed)
    text = markdown(rows)
    command = "python benchmarks/index_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a)
    path = record("serving", rows, text, command, root=args.root, machine=args.machine,
                  section="serving-index", replace={"suite": "index"})
    print(text)
    print(f"recorded {len(rows)} rows in {path} and BENCHMARKS.md")


if __name__ == "__main__":
    main()
