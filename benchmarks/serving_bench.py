"""Serving benchmark: (a) the raw batched user tower, no Serve; (b) POST /recommend over real HTTP at
rising concurrency, free-text and item-id requests; (c) the same while a client edits the catalog.

    python benchmarks/serving_bench.py                        # amazon-scientific, packaged MiniLM (untrained)
    python benchmarks/serving_bench.py --duration 2 --concurrency 1,4 --backbone tiny --root /tmp/sb   # a quick check

The graph is deployed from serve_configs/local.yaml exactly as written (replicas, CPUs, batch size);
only the app args index_dir and store (a fresh SQLite file) and the HTTP port are replaced; the
reranker learned for the index (coldrec rerank) is served with it, as users deploy it. The index
and processed data are built once under --work and reused (--rebuild redoes them). The load
generator (coldrec.serve.loadgen: asyncio, raw keep-alive HTTP/1.1 sockets, closed loop) runs in
its own process on the same machine, so it takes some of the CPU the server could use.
Writes rows to benchmarks/results/serving.json (suite "http", or --suite) and the serving-<suite> section
of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import shlex
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))

from coldrec.bench import record  # noqa: E402
from coldrec.serve.workload import KINDS  # noqa: E402

THROUGHPUT_GOAL, TAIL_LIMIT = 0.7, 3.0
GPU_RPS_GOAL = 2000.0  # /recommend requests per second on one H100
# Where the CPU goes: Ray titles each Serve process ``ray::ServeReplica:<app>:<deployment>``,
# ``ray::ProxyActor``, ``ray::ServeController``; "loadgen" is the load generator's own process.
ROLES = ("ProxyActor", "Ingress", "ProfileEncoder", "Retriever", "Reranker", "ServeController")
DRAIN_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
HA_PROXY_ENV = "RAY_SERVE_ENABLE_HA_PROXY"  # read by every Serve process when it starts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon-scientific", help="uses configs/<dataset>.yaml")
    parser.add_argument("--config", default=None, help="a pipeline config instead of configs/<dataset>.yaml")
    parser.add_argument("--backbone", default="minilm", help="minilm (packaged, untrained), tiny (tests), or a folder")
    parser.add_argument("--serve-config", default=str(ROOT / "serve_configs" / "local.yaml"))
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each level")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="closed-loop clients per level")
    parser.add_argument("--update-rate", type=float, default=2.0, help="catalog writes per second in (c)")
    parser.add_argument("--probe-k", type=int, default=5,
                        help="(c)'s visibility check: a new item must be in the top k for its own text")
    parser.add_argument("--requests", type=int, default=500, help="distinct request bodies per kind")
    parser.add_argument("--root", default=".", help="where benchmarks/results/ and BENCHMARKS.md live")
    parser.add_argument("--work", default=None, help="data, index and state (default <root>/artifacts/serving-bench)")
    parser.add_argument("--machine", default=None, help="override the detected machine description")
    parser.add_argument("--rebuild", action="store_true", help="preprocess and index again")
    parser.add_argument("--suite", default="http",
                        help="rows' suite in serving.json and section serving-<suite> of BENCHMARKS.md "
                             "(e.g. http-gpu for the GPU machine's run, so the CPU rows stay)")
    parser.add_argument("--ha-proxy", action="store_true",
                        help="HTTP through HAProxy straight to the Ingress replicas (RAY_SERVE_ENABLE_HA_PROXY=1) "
                             "instead of Serve's Python proxy; the variable set in the environment does the same")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_index(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """(processed_dir, index version dir) for the dataset and backbone, built unless already there."""
    import json

    from coldrec.config import load_config
    from coldrec.data.preprocess import preprocess
    from coldrec.index.build import build_index, resolve_model_path
    from coldrec.index.item_index import META_FILE, resolve_index_dir
    from coldrec.model.backbone import save_tiny_backbone

    backbone = args.backbone
    if backbone == "tiny":
        backbone = str(work / "tiny-backbone")
        if not (work / "tiny-backbone" / "config.json").exists():
            save_tiny_backbone(backbone)
    config = args.config or str(ROOT / "configs" / f"{args.dataset}.yaml")
    cfg = load_config(config, [f"data.output_dir={work / 'data'}", f"index.output_dir={work / 'index'}",
                               f"model.backbone={backbone}"])  # fmt: skip
    model_path = resolve_model_path(cfg, backbone)  # the bare backbone, never a trained run's checkpoint
    processed, scene_dir = Path(cfg.data.processed_dir), work / "index" / cfg.data.scene_name
    if args.rebuild or not (processed / "items").exists():
        print(f"preprocessing {config} into {processed}", flush=True)
        preprocess(cfg.data, scene_prefix=cfg.model.scene_prefix, text=cfg.model.text)
    try:
        index_dir = resolve_index_dir(scene_dir)
        reusable = json.loads((index_dir / META_FILE).read_text())["model_path"] == model_path
    except FileNotFoundError:
        reusable = False
    if args.rebuild or not reusable:
        print(f"indexing {processed} with {model_path}", flush=True)
        index_dir = build_index(cfg, model_path)
    else:
        print(f"reusing the index {index_dir}", flush=True)
    if args.rebuild or not (index_dir / "rerank" / "weights.json").exists():
        from coldrec.rank.job import fit_reranker

        print("learning the reranker on the validation split (served as users deploy it)", flush=True)
        fit_reranker(cfg, index_dir)
    return processed, index_dir


def encoder_rows(index_dir: Path, bodies: dict, batch_size: int, threads: int, seconds: float) -> list[dict]:
    """(a): texts/s of the ProfileEncoder's own TextEncoder at the Serve batch size, in this process."""
    import torch

    from coldrec.index.item_index import ItemIndex
    from coldrec.serve.app import _model_settings
    from coldrec.serve.encoder import ProfileEncoder
    from coldrec.serve.workload import profile_texts
    from coldrec.text import strip_scene_prefix

    index = ItemIndex.load(index_dir)
    meta = index.meta
    settings = _model_settings(meta["model_path"], meta)
    encoder = ProfileEncoder.func_or_class(meta["model_path"], settings, int(meta["dim"])).encoder
    rows_ = index.rows()
    scene = meta.get("scene") if settings.get("scene_prefix") else None
    scenes = rows_["scene"] if scene and "scene" in rows_ else [None] * len(rows_)
    texts_by_id = {i: strip_scene_prefix(t, s) for i, t, s in zip(rows_["item_id"], rows_["text"], scenes)}
    order = (settings.get("text") or {}).get("history_order", "newest-first")
    torch.set_num_threads(threads)  # what the replica gets: Ray sets OMP_NUM_THREADS to its num_cpus
    rows = []
    for kind in KINDS:
        texts = profile_texts(bodies[kind], texts_by_id, int(settings.get("profile_items", 10)), scene, order)
        encoder.encode_users(texts[:batch_size], batch_size=batch_size)  # warm-up
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            chunk = [texts[(done + j) % len(texts)] for j in range(batch_size)]
            encoder.encode_users(chunk, batch_size=batch_size)
            done += batch_size
        rate = done / (time.perf_counter() - start)
        print(f"encoder {kind}: {rate:.1f} texts/s (batch {batch_size}, {threads} thread(s))", flush=True)
        rows.append({"benchmark": "encoder", "setting": f"{kind} b={batch_size} threads={threads}",
                     "kind": kind, "metric": "texts_per_s", "value": round(rate, 2)})  # fmt: skip
    return rows


def serve_processes() -> dict:
    """{role: [psutil.Process, ...]} for this machine's Serve processes, every replica of each role,
    and the HAProxy that Serve starts with RAY_SERVE_ENABLE_HA_PROXY=1 (role "haproxy")."""
    import psutil

    found: dict[str, list] = {}
    for proc in psutil.process_iter(["cmdline", "name"]):
        title = " ".join(proc.info["cmdline"] or [])
        role = next((r for r in ROLES if title.startswith("ray::") and r in title), None)
        if role is None and proc.info["name"] == "haproxy":
            role = "haproxy"
        if role:
            found.setdefault(role, []).append(proc)
    return found


def cpu_seconds(procs: dict) -> dict[str, float]:
    """{role: user + system CPU seconds summed over the role's processes}."""
    times = {}
    for role, group in procs.items():
        try:
            times[role] = sum(sum(proc.cpu_times()[:2]) for proc in group)
        except Exception:  # a replica that restarted: leave the role out rather than fail the run
            pass
    return times


def cpu_rows(kind: str, level: dict, before: dict[str, float], after: dict[str, float]) -> list[dict]:
    """CPU milliseconds per answered request in each process during one level (warm-up included)."""
    answered = max(level["answered"], 1)
    per = {role: (after[role] - before[role]) * 1000 / answered for role in after if role in before}
    per["total"] = sum(per.values())
    return [{"benchmark": "cpu", "setting": f"{kind} c={level['concurrency']}", "kind": kind,
             "concurrency": level["concurrency"], "metric": f"{role}_cpu_ms_per_request", "value": round(v, 2)}
            for role, v in per.items()]  # fmt: skip


def level_rows(benchmark: str, kind: str, level: dict) -> list[dict]:
    setting = f"{kind} c={level['concurrency']}"
    values = {k: level[k] for k in ("rps", "p50_ms", "p95_ms", "p99_ms", "errors")}
    if "updates" in level:
        u = level["updates"]
        values.update(writes_per_s=u["writes_per_s"], write_errors=u["write_errors"], write_p50_ms=u["p50_ms"],
                      write_p99_ms=u["p99_ms"], visible_checks=u["checks"], visible_fraction=u["visible"] / max(u["checks"], 1))
    return [{"benchmark": benchmark, "setting": setting, "kind": kind, "concurrency": level["concurrency"],
             "metric": metric, "value": round(float(value), 2)} for metric, value in values.items()]  # fmt: skip


def goal_rows(rows: list[dict], gpu: bool = False) -> tuple[list[dict], list[str]]:
    """Saturation rps / encoder texts/s >= 0.7, p99 <= 3 x p50 at the level nearest half saturation,
    and with a GPU saturation >= 2,000 rps."""
    out, lines = [], []
    for kind in KINDS:
        encoder = next(r["value"] for r in rows if r["benchmark"] == "encoder" and r["kind"] == kind)
        levels: dict[int, dict[str, float]] = {}
        for r in rows:
            if r["benchmark"] == "recommend" and r["kind"] == kind:
                levels.setdefault(r["concurrency"], {})[r["metric"]] = r["value"]
        c_sat, saturation = max(((c, level["rps"]) for c, level in levels.items()), key=lambda cs: cs[1])
        # Half saturation on the way up: an overloaded level past saturation can also serve half as much.
        rising = {c: level for c, level in levels.items() if c <= c_sat}
        c_half, half = min(rising.items(), key=lambda kv: abs(kv[1]["rps"] - saturation / 2))
        ratio, tail = saturation / encoder, half["p99_ms"] / max(half["p50_ms"], 1e-9)
        out += [{"benchmark": "goal", "setting": kind, "kind": kind, "metric": m, "value": round(v, 3)}
                for m, v in (("saturation_rps", saturation), ("saturation_over_encoder", ratio),
                             ("half_saturation_concurrency", c_half), ("p99_over_p50_at_half_saturation", tail))]
        lines += [f"- {kind}: saturation {saturation:.1f} rps = {ratio:.2f} x the encoder's {encoder:.1f} texts/s "
                  f"(goal >= {THROUGHPUT_GOAL}): **{'met' if ratio >= THROUGHPUT_GOAL else 'not met'}**",
                  f"- {kind}: at c={c_half} ({half['rps']:.1f} rps, the level below saturation nearest half of it) p99/p50 = "
                  f"{half['p99_ms']:.0f}/{half['p50_ms']:.0f} ms = {tail:.2f} (goal <= {TAIL_LIMIT}): "
                  f"**{'met' if tail <= TAIL_LIMIT else 'not met'}**"]  # fmt: skip
        if gpu:
            lines.append(f"- {kind}: saturation {saturation:.1f} rps on the GPU machine (goal >= {GPU_RPS_GOAL:.0f}): "
                         f"**{'met' if saturation >= GPU_RPS_GOAL else 'not met'}**")
    return out, lines


def table(rows: list[dict], benchmark: str) -> list[str]:
    """One row per setting, one column per metric."""
    cells: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["benchmark"] == benchmark:
            cells.setdefault(r["setting"], {})[r["metric"].removesuffix("_cpu_ms_per_request")] = r["value"]
    if not cells:
        return []
    metrics = list(dict.fromkeys(m for values in cells.values() for m in values))
    lines = [f"**{benchmark}**", "", f"| setting | {' | '.join(metrics)} |", "|---" * (len(metrics) + 1) + "|"]
    lines += [f"| {s} | " + " | ".join(f"{v.get(m, '')}" for m in metrics) + " |" for s, v in cells.items()]
    return lines + [""]


def markdown(rows: list[dict], goals: list[str], notes: list[str]) -> str:
    text = ["Goals:", *goals, "", *[f"- {n}" for n in notes], ""]
    for benchmark in ("encoder", "recommend", "recommend+updates", "cpu", "goal"):
        text += table(rows, benchmark)
    return "\n".join(text)


def run(args: argparse.Namespace) -> tuple[list[dict], str]:
    import ray
    from ray import serve

    from coldrec.runtime import runtime_env_vars
    from coldrec.serve.launch import deploy_config, load_serve_config
    from coldrec.serve.loadgen import run_level
    from coldrec.serve.workload import request_bodies

    work = Path(args.work or Path(args.root) / "artifacts" / "serving-bench").resolve()
    levels = [int(c) for c in args.concurrency.split(",")]
    env_vars = runtime_env_vars()
    os.environ.update(env_vars)
    if args.ha_proxy:
        os.environ[HA_PROXY_ENV] = "1"  # the local Ray started below passes it to Serve's processes
    # Behind HAProxy a stopping Ingress replica stays reachable for 30 s so that load balancers can
    # drop it; this benchmark stops Serve only after the load, with nothing routing, so that wait
    # would only add half a minute to every run.
    os.environ.setdefault(DRAIN_ENV, "1")
    ha_proxy = os.environ.get(HA_PROXY_ENV) == "1"
    # A fresh local Ray of this machine's cores: never join another session's cluster.
    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env_vars})  # fmt: skip
    try:
        processed, index_dir = prepare_index(args, work)
        bodies = request_bodies(processed, n=args.requests)
        port, store = free_port(), work / "state" / f"bench-{os.getpid()}.sqlite"
        store.unlink(missing_ok=True)
        config = load_serve_config(args.serve_config, {"index_dir": str(index_dir), "store": str(store)},
                                   host="127.0.0.1", port=port)  # fmt: skip
        app = config["applications"][0]
        encoder_cfg = next(d for d in app["deployments"] if d["name"] == "ProfileEncoder")
        batch = int(encoder_cfg["user_config"]["max_batch_size"])
        threads = max(1, int(encoder_cfg.get("ray_actor_options", {}).get("num_cpus", 1)))
        rows = encoder_rows(index_dir, bodies, batch, threads, seconds=max(args.duration, 1.0))

        deploy_config(config)
        info = serve.get_deployment_handle("ProfileEncoder", app["name"]).info.remote().result()
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as loadgen:
            import psutil

            procs = {**serve_processes(), "loadgen": [psutil.Process(loadgen.submit(os.getpid).result())]}
            for benchmark, rate in (("recommend", 0.0), ("recommend+updates", args.update_rate)):
                for kind in KINDS:
                    for c in levels:
                        before = cpu_seconds(procs)
                        level = loadgen.submit(run_level, "127.0.0.1", port, bodies[kind], c, args.duration,
                                               args.warmup, rate, f"{kind}{c}", args.probe_k).result()  # fmt: skip
                        if rate == 0:  # the updater's writes and probes would count as requests
                            rows += cpu_rows(kind, level, before, cpu_seconds(procs))
                        print(f"{benchmark} {kind} c={c}: {level['rps']:.1f} rps, p50 {level['p50_ms']:.0f} ms, "
                              f"p99 {level['p99_ms']:.0f} ms, errors {level['errors']} {level['error_samples']}"
                              + (f", updates {level['updates']}" if "updates" in level else ""), flush=True)
                        rows += level_rows(benchmark, kind, level)
    finally:
        serve.shutdown()
        ray.shutdown()
    rows = [{"suite": args.suite, **r} for r in rows]
    goals, lines = goal_rows(rows, gpu=str(info.get("device", "cpu")).startswith("cuda"))
    rows += [{"suite": args.suite, **g} for g in goals]
    deployments = "; ".join(
        f"{d['name']}: " + ", ".join(f"{k}={v}" for k, v in d.items() if k != "name") for d in app["deployments"])
    notes = [
        f"Dataset {processed.name} ({len(bodies['item'])} item-id and {len(bodies['text'])} free-text request "
        f"bodies, k=10), index {index_dir} ({args.backbone} backbone, model {info['model_version']}).",
        f"(a) TextEncoder.encode_users in the benchmark process, batches of {batch} (the ProfileEncoder's "
        f"max_batch_size), {threads} torch thread(s) as its replica gets ({info.get('threads', '?')} reported by it).",
        f"(b, c) {Path(args.serve_config).name} deployments as written: {deployments}.",
        ("HTTP: HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1) forwards each request straight to an Ingress replica's own "
         "HTTP server; Serve's Python proxy only configures it." if ha_proxy else
         "HTTP: Serve's Python proxy (one ProxyActor per node) forwards each request to an Ingress replica."),
        f"Load: closed loop, {args.warmup:g} s warm-up then {args.duration:g} s measured per level; generator: "
        "one asyncio process, raw keep-alive HTTP/1.1 sockets, on the same machine (it shares the cores).",
        f"(c) one writer cycles POST/PUT/DELETE /items at {args.update_rate:g} writes/s; after each acknowledged "
        f"write a /recommend for the item's text checks it (visible = new text in the top {args.probe_k}, "
        "deleted item absent).",
        "cpu: CPU ms per answered request in each process (psutil user+system time over the level, warm-up "
        "included), (b) levels only; loadgen is the load generator.",
    ]
    return rows, markdown(rows, lines, notes)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    rows, text = run(args)
    command = "python benchmarks/serving_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    path = record("serving", rows, text, command.strip(), root=args.root, machine=args.machine,
                  section=f"serving-{args.suite}", replace={"suite": args.suite})  # fmt: skip
    print(text)
    print(f"recorded {len(rows)} rows in {path} and BENCHMARKS.md; wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
