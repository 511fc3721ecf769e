"""Embed the catalog with Ray Data and save a FAISS index beside the model version it came from.

    python -c "from coldrec.config import load_config; from coldrec.index.build import build_index; \
               print(build_index(load_config('configs/ml-100k.yaml')))"

Output: ``<index.output_dir>/<scene>/<version>/{items.faiss, items.parquet, meta.json}`` (meta.json
holds the chosen factory, the tuned ``search_params`` and their measured recall) and
``<index.output_dir>/<scene>/LATEST`` naming that version folder (see ``item_index``).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coldrec.config import ModelConfig, PipelineConfig
from coldrec.index.item_index import ItemIndex, write_latest
from coldrec.model.checkpoint import EncoderSettings, is_checkpoint, load_settings


def resolve_model_path(cfg: PipelineConfig, model_path: str | None = None) -> str:
    """Explicit path, else ``index.model_path``, else the run's best model, else the bare backbone."""
    chosen = model_path or cfg.index.model_path
    if chosen is None:
        best = Path(cfg.train.storage_path) / cfg.train.run_name / "best_model"
        chosen = str(best) if is_checkpoint(best) else cfg.model.backbone
    # Ray workers may start in another directory: hand them absolute paths.
    path = Path(chosen).expanduser()
    return str(path.resolve()) if path.exists() else chosen


def encoder_settings(model_path: str, cfg: PipelineConfig) -> EncoderSettings:
    """What ``TextEncoder.load(model_path, model_config=cfg.model)`` will use, without loading weights."""
    if is_checkpoint(model_path):
        return load_settings(model_path)
    return EncoderSettings.from_configs(cfg.model.model_copy(update={"backbone": model_path}), cfg.data)


class EmbedItems:
    """Ray Data callable class: loads the encoder once per actor, embeds a batch of item texts."""

    def __init__(self, model_path: str, model_config: dict[str, Any], encode_batch_size: int = 64):
        from coldrec.model.encoder import TextEncoder

        self.encoder = TextEncoder.load(model_path, model_config=ModelConfig.model_validate(model_config))
        self.encode_batch_size = encode_batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = ["" if t is None else str(t) for t in batch["text"]]
        # Item ids (and scenes) let a model with ID vectors add them for its warm items.
        vectors = self.encoder.encode_items(texts, batch_size=self.encode_batch_size, item_ids=list(batch["item_id"]),
                                            scenes=list(batch["scene"]) if "scene" in batch else None)  # (batch, dim)
        return {"item_id": batch["item_id"], "text": batch["text"], "embedding": vectors}


def clean_catalog(items: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows that can be indexed, and how many were set aside per reason."""
    if "item_id" not in items.columns or "text" not in items.columns:
        raise ValueError(f"items need item_id and text columns, got {list(items.columns)}")
    skipped: dict[str, int] = {}
    no_id = items["item_id"].isna() | (items["item_id"].astype(str).str.strip() == "")
    no_text = ~no_id & (items["text"].isna() | (items["text"].astype(str).str.strip() == ""))
    duplicate = ~no_id & ~no_text & items["item_id"].duplicated(keep="first")
    for reason, mask in (("missing item_id", no_id), ("empty text", no_text), ("duplicate item_id", duplicate)):
        if mask.any():
            skipped[reason] = int(mask.sum())
    kept = items[~(no_id | no_text | duplicate)].reset_index(drop=True)
    kept["item_id"] = kept["item_id"].astype(str)
    return kept, skipped


def embed_catalog(items_dir: Path, model_path: str, cfg: PipelineConfig) -> dict[tuple[str, str], np.ndarray]:
    """Run the Ray Data pipeline; returns ``(item_id, text) -> vector``."""
    import ray

    import pyarrow.dataset as pads

    # The scene, where the catalog has one, names items for a model with per-scene ID vectors.
    scene = ["scene"] if "scene" in pads.dataset(str(items_dir), format="parquet").schema.names else []
    ds = ray.data.read_parquet(str(items_dir)).select_columns(["item_id", "text", *scene])
    extra: dict[str, Any] = {"num_gpus": 1} if cfg.index.use_gpu else {}
    embedded = ds.map_batches(
        EmbedItems,
        compute=ray.data.ActorPoolStrategy(size=cfg.index.num_actors),
        fn_constructor_kwargs={
            "model_path": model_path,
            "model_config": cfg.model.model_dump(),
            "encode_batch_size": cfg.index.batch_size,
        },
        batch_size=cfg.index.batch_size,
        batch_format="numpy",
        **extra,
    )
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for batch in embedded.iter_batches(batch_format="numpy", batch_size=None):
        for item_id, text, vector in zip(batch["item_id"], batch["text"], batch["embedding"]):
            vectors[(str(item_id), str(text))] = np.asarray(vector, dtype=np.float32)
    return vectors


def version_dir_name(settings: EncoderSettings, model_path: str) -> str:
    # Every bare backbone reports version "untrained"; the backbone's name keeps them apart.
    if settings.version != "untrained":
        return settings.version
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model_path).name or model_path).strip("-.")
    return f"untrained-{slug or 'backbone'}"


def build_index(cfg: PipelineConfig, model_path: str | None = None) -> Path:
    """Embed ``<processed_dir>/items`` and save the index; returns the version folder."""
    from coldrec.data.processed import check_text, load_items

    model_path = resolve_model_path(cfg, model_path)
    settings = encoder_settings(model_path, cfg)
    items_dir = Path(cfg.data.processed_dir) / "items"
    if not items_dir.exists():
        raise FileNotFoundError(f"no catalog at {items_dir}: run preprocessing first")
    # Serving renders new items with the model's templates: the catalog must have been rendered so too.
    check_text(cfg.data.processed_dir, settings.text)
    catalog, skipped = clean_catalog(load_items(cfg.data.processed_dir))
    if catalog.empty:
        raise ValueError(f"{items_dir} holds no indexable items (set aside: {skipped})")

    vectors = embed_catalog(items_dir.resolve(), model_path, cfg)
    keys = list(zip(catalog["item_id"], catalog["text"].astype(str)))
    matrix = np.stack([vectors[key] for key in keys])  # (items, dim)
    meta = {
        "model_path": model_path,
        "model_version": settings.version,
        "scene": cfg.data.scene_name,
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": str(items_dir.resolve()),
        "skipped": skipped,
        "settings": settings.model_dump(),
    }
    # "auto": exact search for small catalogs, a trained IVF with nprobe tuned to
    # cfg.index.target_recall above cfg.index.exact_max_items (see coldrec.index.factory).
    index = ItemIndex.build(catalog, matrix, meta=meta, config=cfg.index)

    scene_dir = Path(cfg.index.output_dir).expanduser().resolve() / cfg.data.scene_name
    final = scene_dir / version_dir_name(settings, model_path)
    # Write aside, then swap in, so a server loading LATEST never reads half an index.
    staging = scene_dir / f".{final.name}.building"
    shutil.rmtree(staging, ignore_errors=True)
    index.save(staging)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    write_latest(final)
    return final
