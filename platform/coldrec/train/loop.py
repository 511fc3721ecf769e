"""What each Ray Train worker runs: fine-tune the two towers with in-batch InfoNCE.

``train_loop_per_worker(config)`` receives ``PipelineConfig.model_dump()`` (Ray wants a
plain dict) with absolute paths, rebuilds the typed config at once, and per epoch:
trains on its shard of ``examples/train`` (tokenized in :class:`TokenizingCollate`; with
``train.batch_by_scene``, regrouped into one-scene batches first; with
``train.hard_negatives``, plus mined negatives re-mined from the current model first),
scores validation Recall@K on rank 0, and reports the same metrics from every rank;
rank 0 attaches a checkpoint (HF dir + coldrec.json + train_state.pt, and with
``model.id_embedding`` the warm items' ID table, id_embedding.pt). If Ray hands the
worker a checkpoint (a rerun of a run with the same name), training resumes from it.
Returns the per-epoch metric history (Ray keeps rank 0's as ``Result.return_value``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from coldrec.config import PipelineConfig
from coldrec.data.processed import load_examples, load_items
from coldrec.model.backbone import load_backbone
from coldrec.model.checkpoint import EncoderSettings, save_checkpoint
from coldrec.model.encoder import profile_tokenizer
from coldrec.model.id_embedding import ID_TABLE_FILE, IdVocab, load_id_state, read_targets, save_id_table
from coldrec.model.lora import adapter_state, apply_lora, is_lora, load_adapter_state, merged_backbone
from coldrec.model.loss import InfoNCELoss
from coldrec.model.towers import TwoTowerModel
from coldrec.train.batching import TokenizingCollate, scene_batches
from coldrec.train.hard_negatives import HardNegativeMiner
from coldrec.train.validation import recall_at_k, sample_examples

TRAIN_STATE_FILE = "train_state.pt"
LOG_EVERY_STEPS = 50


def recall_metric(k: int) -> str:
    return f"val_recall@{k}"


def steps_per_epoch(train_rows: int, num_workers: int, batch_size: int, cap: int | None, scenes: int = 1) -> int:
    """Full batches each worker sees per epoch (Ray splits rows equally; the last partial batch is dropped).

    ``scenes`` > 1: batches hold one scene each (:func:`coldrec.train.batching.scene_batches`), and
    each scene's last partial batch is dropped, which costs at most ``scenes - 1`` more batches.
    Every worker must run the same number of steps (the loss gathers across them), so this is the
    count each is sure to reach.
    """
    steps = (train_rows // num_workers) // batch_size - (scenes - 1)
    if steps <= 0:
        raise ValueError(
            f"{train_rows} training examples give no full batch of {batch_size} on each of {num_workers} workers"
            + (f" (in batches of one of {scenes} scenes)" if scenes > 1 else "")
            + "; lower train.batch_size or train.num_workers"
        )
    return min(steps, cap) if cap else steps


def linear_warmup_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    """LR rises linearly for ``warmup_ratio`` of the steps, then falls linearly to 0."""
    warmup = max(1, math.ceil(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                    id_table: torch.nn.Parameter | None = None, id_lr: float | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable weights; the ID table (``id_table``), when there is one, gets its
    own group with ``id_lr`` and no decay (rows that are not in a batch would only shrink)."""
    # Biases and LayerNorm weights (1-d) are not decayed: decay there only hurts.
    params = [p for p in model.parameters() if p.requires_grad and p is not id_table]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    if id_table is not None:
        groups.append({"params": [id_table], "weight_decay": 0.0, "lr": id_lr or lr})
    return torch.optim.AdamW(groups, lr=lr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def keys_with_scene(cfg: PipelineConfig) -> bool:
    """Whether item keys include the scene: when several scenes train together, so that equal ids
    of different catalogs stay apart. The batches' keys (trainer reads the scene column), the hard
    negatives' and the ID vocabulary's must all follow this one rule."""
    return bool(cfg.train.extra_datasets)


def train_folders(cfg: PipelineConfig) -> list[Path]:
    """``examples/train`` of this config's dataset, then of each of ``train.extra_datasets``."""
    return [Path(d) / "examples" / "train" for d in [cfg.data.processed_dir, *cfg.train.extra_datasets]]


def hard_negative_miner(cfg: PipelineConfig) -> HardNegativeMiner:
    """The miner over every catalog this run trains on (its dataset and ``train.extra_datasets``)."""
    import pandas as pd

    tc = cfg.train
    catalog = pd.concat([load_items(Path(d)) for d in [cfg.data.processed_dir, *tc.extra_datasets]], ignore_index=True)
    return HardNegativeMiner(catalog, tc.hard_negatives, tc.hard_negative_pool, tc.hard_negative_skip,
                             with_scene=keys_with_scene(cfg), seed=tc.seed)  # fmt: skip


def id_vocab(cfg: PipelineConfig) -> IdVocab:
    """The warm items of this run's training data (its dataset and ``train.extra_datasets``)."""
    targets, scenes = read_targets(train_folders(cfg), with_scene=keys_with_scene(cfg))
    return IdVocab.from_targets(targets, scenes, cfg.model.id_embedding.min_count)


def _count_rows(folders: list[Path]) -> int:
    import pyarrow.dataset as pads

    return sum(pads.dataset(str(folder), format="parquet").count_rows() for folder in folders)


def _count_scenes(folders: list[Path]) -> int:
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    scenes: set[str] = set()
    for folder in folders:
        column = pads.dataset(str(folder), format="parquet").to_table(columns=["scene"])["scene"]
        scenes.update(pc.unique(column).to_pylist())
    return len(scenes)


def _mean_across_workers(value: float, device: torch.device) -> float:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def _from_rank0(value: float | None) -> float | None:
    """Every rank reports the same metrics, so rank 0's validation result is broadcast."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _report(metrics: dict, rank: int, model: TwoTowerModel, tokenizer, cfg: PipelineConfig, train_state: dict,
            vocab: IdVocab | None = None) -> None:
    """Ray's pattern: rank 0 saves the unwrapped model to a temp dir; every rank reports."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            settings = EncoderSettings.from_configs(cfg.model, cfg.data, metrics=metrics)
            save_checkpoint(merged_backbone(model.backbone), tokenizer, settings, tmp)  # plain HF weights
            if model.id_embedding is not None:
                save_id_table(tmp, vocab, model.id_embedding.weight)
            if is_lora(model.backbone):
                train_state = {**train_state, "lora": adapter_state(model.backbone)}
            torch.save(train_state, Path(tmp) / TRAIN_STATE_FILE)  # optimizer + scheduler + counters, for resuming
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def train_loop_per_worker(config: dict) -> list[dict]:
    import ray.train
    import ray.train.torch

    cfg = PipelineConfig.model_validate(config)
    tc, processed = cfg.train, cfg.data.processed_dir
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    seed_everything(tc.seed + rank)  # same seed everywhere would give every worker the same dropout masks
    device = ray.train.torch.get_device()

    state: dict = {"epoch": 0, "step": 0, "history": []}
    id_cfg, id_state = cfg.model.id_embedding, None
    resume_from = ray.train.get_checkpoint()
    if resume_from is not None:
        with resume_from.as_directory() as ckpt_dir:
            state = torch.load(Path(ckpt_dir) / TRAIN_STATE_FILE, map_location="cpu", weights_only=True)
            if cfg.model.lora is not None and "lora" not in state:  # else its trained weights would be dropped
                raise ValueError(
                    f"run {tc.run_name!r} was trained without model.lora and cannot resume with it: "
                    "start a new run (another train.run_name, or train.resume=false)"
                )
            if (Path(ckpt_dir) / ID_TABLE_FILE).is_file() != (id_cfg is not None):  # the optimizer's groups differ
                raise ValueError(
                    f"run {tc.run_name!r} was trained {'with' if id_cfg is None else 'without'} model.id_embedding "
                    "and cannot resume with that changed: start a new run (another train.run_name, or train.resume=false)"
                )
            # With LoRA the checkpoint holds merged weights: resume the saved adapters on the original backbone.
            tokenizer, backbone = load_backbone(cfg.model.backbone if cfg.model.lora else ckpt_dir)
            id_state = load_id_state(ckpt_dir)
        if rank == 0:
            print(f"[train] resuming after epoch {state['epoch']} (step {state['step']})")
    else:
        tokenizer, backbone = load_backbone(cfg.model.backbone)
    if cfg.model.lora is not None:
        backbone = apply_lora(backbone, cfg.model.lora)
        if resume_from is not None:
            load_adapter_state(backbone, state["lora"])

    vocab = None
    if id_cfg is not None:  # a resumed run keeps the vocabulary its table was trained with
        vocab = id_state[0] if id_state is not None else id_vocab(cfg)
        if not len(vocab):
            raise ValueError(f"no training target is seen model.id_embedding.min_count={id_cfg.min_count} times")
        if rank == 0:
            print(f"[train] ID embedding for {len(vocab)} warm items (seen >= {id_cfg.min_count} times)")
    tower = TwoTowerModel(backbone, num_ids=len(vocab) if vocab is not None else 0,
                          id_dropout=id_cfg.dropout if id_cfg else 0.0)  # fmt: skip
    if id_state is not None:
        tower.id_embedding.weight.data.copy_(id_state[1])
    # The backbone's pooler is computed but never reaches the loss (we mean-pool), so DDP
    # must not wait for its gradients (nor for the ID rows of items no worker's batch holds).
    model = ray.train.torch.prepare_model(tower, parallel_strategy_kwargs={"find_unused_parameters": True})
    unwrapped: TwoTowerModel = getattr(model, "module", model)
    loss_fn = InfoNCELoss(cfg.model.temperature, gather=tc.gather_negatives)
    folders = train_folders(cfg)
    steps = steps_per_epoch(_count_rows(folders), world, tc.batch_size, tc.max_steps_per_epoch,
                            scenes=_count_scenes(folders) if tc.batch_by_scene else 1)
    id_table = unwrapped.id_embedding.weight if unwrapped.id_embedding is not None else None
    optimizer = build_optimizer(model, tc.lr, tc.weight_decay, id_table, id_cfg.lr if id_cfg else None)
    scheduler = linear_warmup_decay(optimizer, steps * tc.epochs, tc.warmup_ratio)
    if resume_from is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if tc.mixed_precision == "bf16" and device.type == "cuda"
        else contextlib.nullcontext()
    )
    user_tokenizer = profile_tokenizer(tokenizer, cfg.model.text.history_order)
    collate = TokenizingCollate(tokenizer, cfg.model.max_user_tokens, cfg.model.max_item_tokens, user_tokenizer)
    shard = ray.train.get_dataset_shard("train")
    metric = recall_metric(tc.val_k)
    items = valid = None  # validation data lives on rank 0 only
    if rank == 0:
        items = load_items(processed)
        valid = sample_examples(load_examples(processed, "valid"), tc.val_max_users, tc.seed)
    miner = hard_negative_miner(cfg) if tc.hard_negatives else None  # every worker mines its own batches
    miner_rows = None  # the catalog's ID table rows, in the miner's order
    if miner is not None and vocab is not None:
        miner_rows = vocab.rows_for_hashes(torch.as_tensor(miner.keys)).to(device)

    step, history = state["step"], list(state["history"])
    for epoch in range(state["epoch"], tc.epochs):
        if miner is not None:
            unwrapped.eval()
            with autocast:
                miner.refresh(unwrapped.item_tower, tokenizer, cfg.model.max_item_tokens, device,
                              finish=lambda v: unwrapped.add_ids(v, miner_rows))
        model.train()
        shuffle = {"local_shuffle_buffer_size": tc.batch_size * 8,
                   "local_shuffle_seed": tc.seed + epoch}  # a different, reproducible order each epoch
        if tc.batch_by_scene:  # regroup rows into one-scene batches, then tokenize and move them here
            rows = iter(shard.iter_batches(batch_size=tc.batch_size, batch_format="numpy", **shuffle))
            batches = ({k: v.to(device) for k, v in collate(b).items()} for b in scene_batches(rows, tc.batch_size))
        else:
            rows = batches = iter(shard.iter_torch_batches(
                batch_size=tc.batch_size,
                collate_fn=collate,
                drop_last=True,  # the all-gather in the loss needs equal batch sizes on every worker
                **shuffle,
            ))
        loss_sum, n = 0.0, 0
        for batch in itertools.islice(batches, steps):
            inputs = [batch["user_input_ids"], batch["user_attention_mask"],
                      batch["item_input_ids"], batch["item_attention_mask"]]  # fmt: skip
            negative_keys = negatives = None
            if miner is not None:
                texts, negative_keys = miner.sample(batch["item_keys"])
                negatives = tokenizer(texts, padding=True, truncation=True, max_length=cfg.model.max_item_tokens,
                                      return_tensors="pt").to(device)  # fmt: skip
                inputs += [negatives["input_ids"], negatives["attention_mask"]]
                negative_keys = negative_keys.to(device)
            ids = {}
            if vocab is not None:
                ids["item_id_rows"] = vocab.rows_for_hashes(batch["item_keys"])
                if negative_keys is not None:
                    ids["negative_id_rows"] = vocab.rows_for_hashes(negative_keys)
            with autocast:
                outputs = model(*inputs, **ids)  # user, item[, negatives] embeddings, each (rows, dim)
            negative_emb = outputs[2] if len(outputs) > 2 else None
            loss = loss_fn(outputs[0], outputs[1], batch["item_keys"], negative_emb, negative_keys)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step, n, loss_sum = step + 1, n + 1, loss_sum + float(loss.detach())
            if rank == 0 and n % LOG_EVERY_STEPS == 0:
                print(f"[train] epoch {epoch + 1} step {n}/{steps} loss {loss_sum / n:.4f}")
        # Closing now (not at garbage collection) tells Ray's split coordinator at once that
        # this worker is done with the epoch, also when the step cap stopped it early.
        for it in (batches, rows):
            getattr(it, "close", lambda: None)()
        train_loss = _mean_across_workers(loss_sum / max(n, 1), device)

        recall = None
        if rank == 0:
            with autocast:
                recall = recall_at_k(
                    unwrapped, tokenizer, items, valid, tc.val_k,
                    cfg.model.max_user_tokens, cfg.model.max_item_tokens, device=device, id_vocab=vocab,
                    user_tokenizer=user_tokenizer,
                )
        recall = _from_rank0(recall)
        metrics = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, metric: recall}
        history.append(metrics)
        if rank == 0:
            print(f"[train] epoch {epoch + 1}/{tc.epochs} step {step} loss {train_loss:.4f} {metric} {recall:.4f}")

        _report(metrics, rank, unwrapped, tokenizer, cfg, {
            "epoch": epoch + 1, "step": step, "history": history,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        }, vocab)
    return history
