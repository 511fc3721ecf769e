"""The recommendation graph, assembled in one place: Ingress(ProfileEncoder, Retriever(ProfileEncoder), Reranker),
all sharing one state store (AppArgs.store) for user events and the live catalog.

    serve run serve_configs/local.yaml                      # from the repository root
    serve run coldrec.serve.app:build_app index_dir=artifacts/index/ml-100k

``build_app`` is a Serve application builder: Serve validates the YAML ``args:`` into
:class:`AppArgs` (it reads the parameter's annotation, so this module must not use
``from __future__ import annotations``). Replicas, CPUs/GPUs, autoscaling and batch sizes
belong in serve_configs/*.yaml.
"""

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from coldrec.index.item_index import META_FILE, resolve_index_dir
from coldrec.model.checkpoint import is_checkpoint, load_settings
from coldrec.rank.fusion import WEIGHTS_FILE
from coldrec.rank.job import RERANK_DIR
from coldrec.serve.encoder import ProfileEncoder
from coldrec.serve.ingress import Ingress
from coldrec.serve.reranker import Reranker
from coldrec.serve.retriever import Retriever


DEFAULT_STATE_DIR = "artifacts/state"


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    index_dir: str = Field(description="an index version folder, or its parent holding LATEST")
    model_path: str | None = Field(None, description="checkpoint dir or backbone; default: the index's own model")
    max_k: int = Field(100, ge=1)
    max_text_chars: int = Field(2000, ge=1)
    max_item_ids: int = Field(50, ge=1)
    candidates: int = Field(100, ge=1, description="how many candidates the retriever hands the reranker")
    # Default CPU reservation per replica for apps built in code (tests, notebooks); a Serve
    # config's ``deployments: ray_actor_options`` overrides it. None = Serve's default (1 CPU).
    num_cpus_per_replica: float | None = Field(None, ge=0)
    store: str | None = Field(
        None,
        description="shared state (user events, catalog changes): a SQLite file, or a redis:// URL for clusters "
        "(?prefix=name: keeps apps apart); default artifacts/state/<scene>.sqlite, one per catalog",
    )
    max_history: int = Field(50, ge=1, description="how many of a user's latest events build their profile")
    reranker_dir: str | None = Field(
        None,
        description="signals + fusion weights from `coldrec rerank`; default: the index version's rerank/ folder "
        "when it exists (else relevance = the content score); 'none' turns fusion off",
    )
    search_device: Literal["cpu", "gpu", "auto"] = Field(
        "cpu", description="where Retriever replicas search: 'auto' = a FAISS GPU copy when the replica has a GPU")
    compact_every: int = Field(1000, ge=1, description="compact the catalog change log every N edits per ingress")
    # Retriever replicas for apps built in code (tests); Serve configs set num_replicas themselves.
    num_retriever_replicas: int | None = Field(None, ge=1)


def _model_settings(model_path: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The encoder settings to serve with: the checkpoint's own, else those the index was built with."""
    if is_checkpoint(model_path):
        return load_settings(model_path).model_dump()
    return {**meta.get("settings", {}), "backbone": model_path, "version": "untrained"}


def resolve_store(location: str) -> str:
    """Make a SQLite path absolute: replicas may start in another directory. URLs pass unchanged."""
    if "://" in location and not location.startswith("sqlite://"):
        return location
    return str(Path(location.removeprefix("sqlite://")).expanduser().resolve())


def _reranker_dir(chosen: str | None, index_dir: Path) -> str | None:
    if chosen == "none":
        return None
    if chosen is not None:
        path = Path(chosen).expanduser().resolve()
        if not (path / WEIGHTS_FILE).is_file():
            raise ValueError(f"reranker_dir {path} holds no {WEIGHTS_FILE}: run `coldrec rerank` first")
        return str(path)
    default = index_dir / RERANK_DIR
    return str(default) if (default / WEIGHTS_FILE).is_file() else None


def build_app(args: AppArgs) -> Application:
    """Bind the graph for one index version (LATEST is read once here, so every replica serves the same one)."""
    if isinstance(args, dict):  # called by hand with the YAML's args
        args = AppArgs.model_validate(args)
    index_dir = resolve_index_dir(args.index_dir)
    meta = json.loads((index_dir / META_FILE).read_text())
    model_path = args.model_path or meta["model_path"]
    if Path(model_path).expanduser().exists():
        model_path = str(Path(model_path).expanduser().resolve())
    settings = _model_settings(model_path, meta)
    if settings["version"] != meta["model_version"]:
        raise ValueError(
            f"model {model_path} is version {settings['version']!r} but the index at {index_dir} was built with "
            f"{meta['model_version']!r}: build an index with this model, or leave model_path unset"
        )

    options: dict[str, Any] = {}
    if args.num_cpus_per_replica is not None:
        options["ray_actor_options"] = {"num_cpus": args.num_cpus_per_replica}
    encoder = ProfileEncoder.options(**options).bind(model_path, settings, int(meta["dim"]))
    store = resolve_store(args.store or f"{DEFAULT_STATE_DIR}/{meta.get('scene') or 'coldrec'}.sqlite")
    retriever_options = dict(options)
    if args.num_retriever_replicas is not None:
        retriever_options["num_replicas"] = args.num_retriever_replicas
    retriever = Retriever.options(**retriever_options).bind(str(index_dir), store, encoder, args.search_device)
    reranker = Reranker.options(**options).bind(reranker_dir=_reranker_dir(args.reranker_dir, index_dir))
    return Ingress.options(**options).bind(
        encoder,
        retriever,
        reranker,
        model_version=meta["model_version"],
        profile_items=int(settings.get("profile_items", 10)),
        scene_prefix=bool(settings.get("scene_prefix", False)),
        text=settings.get("text"),
        default_scene=meta.get("scene"),
        max_k=args.max_k,
        max_text_chars=args.max_text_chars,
        max_item_ids=args.max_item_ids,
        candidates=args.candidates,
        store=store,
        max_history=args.max_history,
        compact_every=args.compact_every,
    )
