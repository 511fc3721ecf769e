"""Fine-tune the profile model with Ray Train and export the best checkpoint.

Run as a Ray job (``coldrec train --config configs/x.yaml``), or from Python::

    result = train(load_config("configs/ml-100k.yaml", ["train.epochs=2"]))
    result.best_model_dir   # <storage_path>/<run_name>/best_model: HF dir + coldrec.json

Ray Train V2 semantics this relies on: a run is identified by ``RunConfig(name,
storage_path)``; rerunning with the same pair restores Ray's checkpoint bookkeeping from
storage and hands every worker the latest checkpoint through ``ray.train.get_checkpoint()``
(``resume_from_checkpoint`` is deprecated and raises). So resuming is the default, and
``train.resume=false`` moves the old run folder aside before starting.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from coldrec.config import PipelineConfig, TextConfig, TrainConfig
from coldrec.data.processed import check_text
from coldrec.train.batching import TRAIN_COLUMNS
from coldrec.train.loop import TRAIN_STATE_FILE, keys_with_scene, recall_metric, train_folders, train_loop_per_worker

if TYPE_CHECKING:
    import ray.data

BEST_MODEL_DIRNAME = "best_model"


class TrainResult(BaseModel):
    best_model_dir: Path  # plain HF dir + coldrec.json (no train_state.pt)
    best_metrics: dict[str, Any]  # {"epoch", "step", "train_loss", "val_recall@K"} of the best epoch
    latest_checkpoint: Path | None  # Ray checkpoint dir of the last epoch (has train_state.pt)
    history: list[dict[str, Any]]  # one metrics dict per epoch, across resumed runs too


def run_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.storage_path).expanduser().resolve() / cfg.run_name


def best_model_dir(cfg: TrainConfig) -> Path:
    """Where :func:`train` exports the best checkpoint: a stable path for indexing, eval and serving."""
    return run_dir(cfg) / BEST_MODEL_DIRNAME


def _with_absolute_paths(cfg: PipelineConfig) -> PipelineConfig:
    # Workers may run in another working directory (a Ray job's runtime_env), so relative
    # paths are resolved here, on the driver, once.
    data = cfg.data.model_copy(update={"output_dir": str(Path(cfg.data.output_dir).expanduser().resolve())})
    backbone = Path(cfg.model.backbone).expanduser()
    model = cfg.model.model_copy(update={"backbone": str(backbone.resolve())}) if backbone.exists() else cfg.model
    train = cfg.train.model_copy(update={
        "storage_path": str(Path(cfg.train.storage_path).expanduser().resolve()),
        "extra_datasets": [str(Path(d).expanduser().resolve()) for d in cfg.train.extra_datasets],
    })
    return cfg.model_copy(update={"data": data, "model": model, "train": train})


def check_inputs(processed: Path, train_only: bool = False, text: TextConfig | None = None) -> None:
    """Fail on the driver, with the folder's name, before any worker starts; ``train_only`` for
    an extra dataset, which gives training examples only; ``text``: the ``model.text`` the
    folder's texts must have been rendered with."""
    import pyarrow.dataset as pads

    if text is not None:
        check_text(processed, text)

    needs = {"examples/train": TRAIN_COLUMNS, "examples/valid": ["profile_text", "target"], "items": ["item_id", "text"]}
    if train_only:
        needs = {"examples/train": [*TRAIN_COLUMNS, "scene"]}
    for sub, columns in needs.items():
        folder = processed / sub
        if not folder.is_dir() or not any(folder.glob("*.parquet")):
            raise FileNotFoundError(f"{folder} has no parquet files; run `coldrec preprocess` first")
        missing = sorted(set(columns) - set(pads.dataset(str(folder), format="parquet").schema.names))
        if missing:
            raise ValueError(f"{folder} lacks columns {missing} (layout in coldrec.data.schema)")


def set_aside_previous_run(cfg: TrainConfig) -> Path | None:
    """With ``resume=false``, move an existing run folder aside so Ray starts afresh; returns where it went."""
    previous = run_dir(cfg)
    if cfg.resume or not previous.exists():
        return None
    aside = previous.with_name(f"{cfg.run_name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    previous.rename(aside)
    print(f"[train] train.resume=false: moved the previous run to {aside}")
    return aside


def _export_best(checkpoint_dir: Path, target: Path) -> Path:
    """Copy the HF dir + coldrec.json (not the optimizer state) to ``target``, replacing it whole."""
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(checkpoint_dir, staging, ignore=shutil.ignore_patterns(TRAIN_STATE_FILE))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def no_cpu_for_data_warning(cluster_cpus: float, tc: TrainConfig) -> str | None:
    """A warning when the training workers take every CPU of the cluster: Ray Data, which reads
    and shuffles the examples, then gets none, and the run waits without a word until one joins."""
    taken = tc.num_workers * tc.cpus_per_worker
    if cluster_cpus - taken >= 1:
        return None
    return (f"[train] warning: {tc.num_workers} worker(s) x train.cpus_per_worker={tc.cpus_per_worker} take "
            f"{taken} of the cluster's {cluster_cpus:g} CPUs and leave none for Ray Data to read the training "
            "examples; the run will wait until another CPU joins the cluster (lower train.cpus_per_worker)")


def training_dataset(cfg: PipelineConfig) -> "ray.data.Dataset":
    """The training examples of every scene as one Ray Dataset, shuffled once (seeded) unless
    ``train.global_shuffle`` is off and there is only one scene."""
    import ray.data

    tc = cfg.train
    columns = TRAIN_COLUMNS + (["scene"] if keys_with_scene(cfg) else [])
    data = ray.data.read_parquet([str(f) for f in train_folders(cfg)]).select_columns(columns)
    if tc.global_shuffle or tc.extra_datasets:  # mixed users (and scenes), not one after another
        data = data.random_shuffle(seed=tc.seed)
    return data


def train(cfg: PipelineConfig) -> TrainResult:
    """Fine-tune on ``<processed_dir>/examples/train`` (and ``train.extra_datasets``'); return where
    the best model landed and the metrics."""
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = _with_absolute_paths(cfg)
    tc, processed = cfg.train, cfg.data.processed_dir
    check_inputs(processed, text=cfg.model.text)
    for extra in tc.extra_datasets:
        check_inputs(Path(extra), train_only=True, text=cfg.model.text)
    set_aside_previous_run(tc)
    train_data = training_dataset(cfg)
    warning = no_cpu_for_data_warning(ray.cluster_resources().get("CPU", 0.0), tc)
    if warning:
        print(warning)

    metric = recall_metric(tc.val_k)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg.model_dump(mode="json"),
        scaling_config=ScalingConfig(
            num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker={"CPU": tc.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=tc.run_name,
            storage_path=tc.storage_path,
            # Ray keeps the latest checkpoint besides the num_to_keep best, so resuming always works.
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order="max"
            ),
        ),
        datasets={"train": train_data},
    )
    print(f"[train] run {tc.run_name!r}: {tc.epochs} epoch(s), {tc.num_workers} worker(s), storage {tc.storage_path}")
    result = trainer.fit()

    if not result.best_checkpoints:
        raise RuntimeError(f"run {tc.run_name!r} finished without any checkpoint")
    # Ties go to the later epoch: same validation score, more training.
    best_ckpt, best_metrics = max(result.best_checkpoints, key=lambda cm: (cm[1][metric], cm[1]["step"]))
    exported = _export_best(Path(best_ckpt.path), best_model_dir(tc))
    history = result.return_value or sorted((m for _, m in result.best_checkpoints), key=lambda m: m["epoch"])
    print(f"[train] best {metric} {best_metrics[metric]:.4f} (epoch {best_metrics['epoch']}) -> {exported}")
    return TrainResult(
        best_model_dir=exported,
        best_metrics=dict(best_metrics),
        latest_checkpoint=Path(result.checkpoint.path) if result.checkpoint else None,
        history=list(history),
    )
