"""The quality table: protocols x methods over several datasets, as rows and markdown.

Driven by a YAML file (see ``configs/quality-table-cpu.yaml``) mapping onto
:class:`QualityTableConfig`; ``benchmarks/quality_table.py`` records the result through
:func:`coldrec.bench.record`. Models are evaluated as given (trained elsewhere, or the
untrained backbone): this job never trains.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from coldrec.config import PipelineConfig, apply_overrides, load_config
from coldrec.eval.methods import ALL_METHODS, Methods
from coldrec.eval.protocols import run_protocols

log = logging.getLogger(__name__)
BUCKETLESS = ("leave-one-out", "cross-scene")
COLUMNS = ("recall", "ndcg", "hit", "mrr", "coverage", "novelty", "diversity", "popularity_bias")


class QualityRun(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    config: str  # a pipeline YAML (configs/<dataset>.yaml)
    overrides: list[str] = Field(default_factory=list)
    # Checkpoint for the "finetuned" method: a path, "auto" (index.model_path or the run's
    # best_model, when it exists) or null (no fine-tuned rows).
    model: str | None = "auto"
    # Scenes the model was fine-tuned on; leave-one-out on any other scene is labelled cross-scene.
    trained_on: list[str] | None = None
    protocols: list[str] | None = None  # default: the config's eval.protocols
    methods: list[str] | None = None  # default: the config's eval.methods
    preprocess: bool = True  # preprocess first when the processed folder is missing
    # Tells this run's model apart from another run's on the same dataset: its "finetuned" and
    # "fused" rows are named "<method>:<label>" (e.g. single-scene against joint models).
    label: str | None = None
    # The methods whose rows take the label; runs that differ in their data, not their model (a text
    # template, a history length), label the untrained encoder's rows too.
    label_methods: list[str] = Field(default_factory=lambda: ["finetuned", "fused"])


class QualityTableConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overrides: list[str] = Field(default_factory=list)  # applied to every run, before the run's own
    runs: list[QualityRun]


def load_table_config(path: str | Path, overrides: list[str] | None = None) -> QualityTableConfig:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    table = QualityTableConfig.model_validate(raw)
    table.overrides = [*table.overrides, *(overrides or [])]
    for run in table.runs:
        unknown = set(run.methods or []) - set(ALL_METHODS)
        if unknown:
            raise ValueError(f"{path}: unknown method(s) {sorted(unknown)}; choose from {ALL_METHODS}")
    return table


def _model_path(run: QualityRun, cfg: PipelineConfig) -> str | None:
    if run.model != "auto":
        return run.model
    from coldrec.eval.evaluate import default_model_path

    path = cfg.index.model_path or str(default_model_path(cfg))
    return path if Path(path).exists() else None


def run_config(run: QualityRun, table_overrides: list[str]) -> PipelineConfig:
    cfg = load_config(run.config)
    return PipelineConfig.model_validate(apply_overrides(cfg.model_dump(), [*table_overrides, *run.overrides]))


def run_quality_table(table: QualityTableConfig) -> tuple[list[dict], list[dict]]:
    """Every run's protocols x methods. Returns (rows, notes): one note per run and protocol."""
    rows: list[dict] = []
    notes: list[dict] = []
    for run in table.runs:
        cfg = run_config(run, table.overrides)
        if run.preprocess and not (cfg.data.processed_dir / "stats.json").exists():
            from coldrec.data.preprocess import preprocess
            from coldrec.runtime import init_ray

            init_ray()
            preprocess(cfg.data, scene_prefix=cfg.model.scene_prefix, text=cfg.model.text)
        model_path = _model_path(run, cfg)
        methods = run.methods or cfg.eval.methods
        if "finetuned" in methods and not model_path:
            log.warning("%s: no fine-tuned model found; its rows are left out", cfg.data.scene_name)
        results = run_protocols(cfg, model_path, run.protocols, methods, run.trained_on,
                                Methods(cfg.eval, cfg.model, model_path))
        for protocol, result in results.items():
            for row in result.rows:
                own_model = row["method"] in ("finetuned", "fused")
                row = {**row, "model": model_path if own_model else None}
                if run.label and row["method"] in run.label_methods:
                    row["method"] = f"{row['method']}:{run.label}"
                if protocol in BUCKETLESS and row["bucket"] == "all":
                    row.pop("bucket")
                rows.append(row)
            notes.append({"dataset": cfg.data.scene_name, "protocol": protocol, "model": model_path,
                          "max_users": cfg.eval.max_users, "label": run.label, **result.info})
    return rows, notes


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def markdown(rows: list[dict], notes: list[dict], k: int = 10) -> str:
    """One table per dataset and protocol, metrics at ``k``, then the notes.

    Rows with history items masked (``eval.mask_history``) follow as "<method> (masked)".
    """
    parts: list[str] = []
    groups = dict.fromkeys((r["dataset"], r["protocol"]) for r in rows)
    for dataset, protocol in groups:
        sel = [r for r in rows if (r["dataset"], r["protocol"]) == (dataset, protocol)]
        cols = [c for c in COLUMNS if any(r["metric"] == c for r in sel)]
        names = [c if c == "mrr" else f"{c}@{k}" for c in cols]
        parts.append(f"### {dataset} / {protocol}\n")
        parts.append("| bucket | method | users | " + " | ".join(names) + " |")
        parts.append("|---|---|---|" + "---|" * len(names))
        keys = sorted(dict.fromkeys((r["masked_history"], r.get("bucket", "-"), r["method"]) for r in sel),
                      key=lambda key: key[0])  # stable: unmasked rows first, each in run order
        for masked, bucket, method in keys:
            cell = {r["metric"]: r for r in sel if (r["masked_history"], r.get("bucket", "-"), r["method"])
                    == (masked, bucket, method) and r["k"] in (None, k)}
            users = next(iter(cell.values()))["users"] if cell else 0
            values = [_fmt(cell[c]["value"]) if c in cell else "" for c in cols]
            label = f"{method} (masked)" if masked else method
            parts.append(f"| {bucket} | {label} | {users} | " + " | ".join(values) + " |")
        for note in (n for n in notes if (n["dataset"], n["protocol"]) == (dataset, protocol)):
            chosen = {m: v["chosen"] for m, v in note.items() if isinstance(v, dict) and "chosen" in v}
            chosen.update({f"{m}, free text alone": v["free_text"]["chosen"] for m, v in note.items()
                           if isinstance(v, dict) and isinstance(v.get("free_text"), dict)})
            run = f" ({note['label']})" if note.get("label") else ""  # several runs per table: whose facts
            parts.append(f"\nFacts{run}: {note.get('facts')}; chosen on validation: {chosen or '-'}; "
                         f"seconds: { {m: v['seconds'] for m, v in note.items() if isinstance(v, dict) and 'seconds' in v} }\n")
    return "\n".join(parts)


def compare_methods(rows: list[dict], base: str, other: str, metric: str = "ndcg", k: int | None = 10,
                    masked: bool = False) -> list[dict]:
    """``other`` relative to ``base`` per (dataset, protocol, bucket): one dict with both values and
    ``ratio`` = other / base (None where base is 0), for every group where both methods have ``metric@k``."""
    values: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if r["metric"] == metric and r.get("k") == k and r["masked_history"] == masked and r["method"] in (base, other):
            values.setdefault((r["dataset"], r["protocol"], r.get("bucket")), {})[r["method"]] = r["value"]
    out = []
    for (dataset, protocol, bucket), pair in values.items():
        if base in pair and other in pair:
            ratio = round(pair[other] / pair[base], 4) if pair[base] else None  # None: base scored 0
            out.append({"dataset": dataset, "protocol": protocol, "bucket": bucket, "metric": metric, "k": k,
                        "masked_history": masked, "base": base, "other": other, "base_value": pair[base],
                        "other_value": pair[other], "ratio": ratio})
    return out
