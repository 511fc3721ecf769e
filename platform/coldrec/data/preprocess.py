"""Ray Data preprocessing: raw source -> validated catalog, interactions and leave-one-out examples.

Run it with ``coldrec preprocess`` or ``preprocess(DataConfig(dataset="ml-100k"))``; the
output layout is documented in :mod:`coldrec.data.schema`. Stages:

1. items: read -> ``check_items`` (map_batches) -> group by item_id to drop duplicates.
2. interactions: read -> ``check_interactions`` (map_batches, against the kept catalog)
   -> group by user_id: de-duplicate, order by (timestamp, position), build examples.
   One shuffle emits every output kind (interaction / rejected / example / short_user)
   into one table, so the user's rows are sorted once; one sink pass writes each kind.
3. counts: every input row is kept or rejected, checked, and written to stats.json.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from pydantic import BaseModel
from ray.data.expressions import col

from coldrec.config import DataConfig, HistoryOrder, TextConfig
from coldrec.data.fetch import resolve_source_dir
from coldrec.data.readers import DataError, read_source
from coldrec.data.schema import (
    EXAMPLE_SCHEMA,
    INTERACTION_SCHEMA,
    ITEM_SCHEMA,
    ITEM_TEXT_FIELDS,
    REJECT_SCHEMA,
    SPLITS,
)
from coldrec.data.validate import DUPLICATE, DUPLICATE_ITEM, check_interactions, check_items, first_of_duplicates
from coldrec.text import render_item_text, render_profile_text

# Few shuffle partitions: the data is small and Ray's default (200) costs more in task overhead.
SHUFFLE_PARTITIONS = 4
LEAVE_ONE_OUT_MIN = 3  # train needs nothing, but valid and test each need a history item

_ROW_FIELDS = [
    ("kind", pa.string()),  # interaction | rejected | example | short_user
    *[(f.name, f.type) for f in INTERACTION_SCHEMA],
    ("source", pa.string()),
    ("row", pa.string()),
    ("reason", pa.string()),
    *[(f.name, f.type) for f in EXAMPLE_SCHEMA if f.name not in ("user_id", "scene")],
]
USER_ROWS_SCHEMA = pa.schema(_ROW_FIELDS)
ITEM_OUT_SCHEMA = ITEM_SCHEMA.append(pa.field("text", pa.string()))


class PreprocessResult(BaseModel):
    processed_dir: Path
    counts: dict[str, int]


def _mark_duplicate_items(group: pa.Table) -> pa.Table:
    """Keep the first row (file order) of an item_id; later ones become duplicate_item.

    Adds ``kind``: item | rejected, the same selector the user rows use.
    """
    reasons = group.column("reason").to_pylist()
    positions = [p if p is not None else 0 for p in group.column("position").to_pylist()]
    order = sorted((i for i, r in enumerate(reasons) if r is None), key=lambda i: positions[i])
    dup = first_of_duplicates([(x,) for x in group.column("item_id").to_pylist()], order)
    reasons = [DUPLICATE_ITEM if d else r for d, r in zip(dup, reasons)]
    rows = group.column("row").to_pylist()
    for i in (i for i, d in enumerate(dup) if d):
        rows[i] = json.dumps({k: group.column(k)[i].as_py() for k in ("item_id", *ITEM_SCHEMA.names[2:])})
    group = group.set_column(group.schema.get_field_index("reason"), "reason", pa.array(reasons, pa.string()))
    group = group.set_column(group.schema.get_field_index("row"), "row", pa.array(rows, pa.string()))
    return group.append_column("kind", pa.array(["item" if r is None else "rejected" for r in reasons], pa.string()))


def _user_rows(
    group: pa.Table,
    texts: dict[str, str],
    plain_texts: dict[str, str],
    max_history: int,
    profile_items: int,
    min_interactions: int,
    scene_prefix: bool,
    order: HistoryOrder = "newest-first",
) -> pa.Table:
    """One user's checked rows -> rejected rows, kept interactions and leave-one-out examples.

    ``texts``: item text as written to items/ (scene-prefixed when asked), used for targets;
    ``plain_texts``: without the prefix, joined into the profile.
    """
    cols = {name: group.column(name).to_pylist() for name in group.column_names}
    out: dict[str, list] = {name: [] for name in USER_ROWS_SCHEMA.names}

    def emit(kind: str, **values) -> None:
        for name in out:
            out[name].append(kind if name == "kind" else values.get(name))

    valid = [i for i, r in enumerate(cols["reason"]) if r is None]
    for i in (i for i, r in enumerate(cols["reason"]) if r is not None):
        emit("rejected", source=cols["source"][i], row=cols["row"][i], reason=cols["reason"][i])
    # Null timestamps (order-only sources) sort by position alone; they are never duplicates,
    # since such sources may repeat an item on purpose (a re-purchase).
    ts, pos = cols["timestamp"], cols["position"]
    valid.sort(key=lambda i: (ts[i] if ts[i] is not None else -(2**62), pos[i] if pos[i] is not None else 2**62))
    keys = [(cols["item_id"][i], ts[i]) if ts[i] is not None else (i,) for i in range(group.num_rows)]
    dup = first_of_duplicates(keys, valid)
    sequence: list[str] = []
    for i in valid:
        if dup[i]:
            row = {k: cols[k][i] for k in ("user_id", "item_id", "timestamp", "rating", "position")}
            emit("rejected", source=cols["source"][i], row=json.dumps(row), reason=DUPLICATE)
            continue
        emit("interaction", **{k: cols[k][i] for k in INTERACTION_SCHEMA.names})
        sequence.append(cols["item_id"][i])
    if not sequence:
        return pa.Table.from_pydict(out, schema=USER_ROWS_SCHEMA)
    user, scene = cols["user_id"][valid[0]], cols["scene"][valid[0]]
    if len(sequence) < max(min_interactions, LEAVE_ONE_OUT_MIN):
        emit("short_user", user_id=user, scene=scene)
        return pa.Table.from_pydict(out, schema=USER_ROWS_SCHEMA)
    n = len(sequence)
    for t in range(1, n):
        history = sequence[max(0, t - max_history) : t]
        recent = [plain_texts[h] for h in reversed(history)]
        profile = render_profile_text(recent, max_items=profile_items, scene=scene if scene_prefix else None,
                                      order=order)
        split = "test" if t == n - 1 else "valid" if t == n - 2 else "train"
        emit("example", user_id=user, scene=scene, history=history, target=sequence[t], split=split,
             profile_text=profile, target_text=texts[sequence[t]])  # fmt: skip
    return pa.Table.from_pydict(out, schema=USER_ROWS_SCHEMA)


def _write_outputs(batch: pa.Table, outputs: list[tuple[str, str | None, str, pa.Schema]]) -> pa.Table:
    """Write one block's rows to every output folder; return its row counts by (kind, reason, split).

    A sink pass of our own rather than one ``write_parquet`` per output: each of those would
    re-read the whole table (example rows carry long profile texts) to keep a fifth of it.
    ``outputs``: (kind, split or None, folder, schema) per destination.
    """
    name = f"{uuid.uuid4().hex}.parquet"
    for kind, split, folder, schema in outputs:
        mask = pc.equal(batch.column("kind"), kind)
        if split is not None:
            mask = pc.and_(mask, pc.equal(batch.column("split"), split))
        part = batch.filter(mask)
        if part.num_rows:
            pq.write_table(part.select(schema.names).cast(schema), Path(folder) / name)
    split = batch.column("split") if "split" in batch.column_names else pa.nulls(batch.num_rows, pa.string())
    keys = Counter(zip(batch.column("kind").to_pylist(), batch.column("reason").to_pylist(), split.to_pylist()))
    return pa.table(
        {
            "kind": [k[0] for k in keys],
            "reason": pa.array([k[1] for k in keys], pa.string()),
            "split": pa.array([k[2] for k in keys], pa.string()),
            "n": list(keys.values()),
        }
    )


def _write_all(ds: ray.data.Dataset, outputs: list[tuple[str, str | None, Path, pa.Schema]]) -> Counter:
    """Run the sink over ``ds``; every output folder ends up with at least a schema-only file."""
    for _, _, folder, _ in outputs:
        folder.mkdir(parents=True, exist_ok=True)
    plain = [(kind, split, str(folder), schema) for kind, split, folder, schema in outputs]
    tally: Counter = Counter()
    for row in ds.map_batches(_write_outputs, batch_format="pyarrow", fn_kwargs={"outputs": plain}).take_all():
        tally[(row["kind"], row["reason"], row["split"])] += row["n"]
    for _, _, folder, schema in outputs:
        if not any(folder.glob("*.parquet")):  # readers then find the schema, not an empty folder
            pq.write_table(schema.empty_table(), folder / "empty.parquet")
    return tally


def _clear(out: Path) -> None:
    for name in ("items", "interactions", "examples", "rejected"):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "stats.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _run(ds: ray.data.Dataset, what: str) -> ray.data.Dataset:
    """Execute; a read failure inside Ray (malformed file) becomes a DataError naming it."""
    try:
        return ds.materialize()
    except Exception as e:  # Ray wraps task errors; keep the innermost error line, drop the traces
        if type(e) is DataError:
            raise
        lines = [ln for ln in str(e).splitlines() if re.match(r"^[\w.]*(Error|Exception): ", ln)]
        detail = lines[-1].split(": ", 1)[1] if lines else str(e).strip().splitlines()[-1]
        raise DataError(f"{what}: {detail}") from e


def _table_counts(tally: Counter, kept_kind: str) -> dict:
    """input = kept + rejected for one table, with the rejected rows counted by reason."""
    kept = sum(n for (kind, _, _), n in tally.items() if kind == kept_kind)
    by_reason: Counter = Counter()
    for (kind, reason, _), n in tally.items():
        if kind == "rejected":
            by_reason[reason] += n
    by_reason = dict(sorted(by_reason.items()))
    return {"kept": kept, "rejected": sum(by_reason.values()), "rejected_by_reason": by_reason}


def preprocess(cfg: DataConfig, scene_prefix: bool = False, text: TextConfig | None = None) -> PreprocessResult:
    """Read ``cfg.dataset``, validate, build examples; (over)write ``cfg.processed_dir``.

    ``scene_prefix`` (``model.scene_prefix``) prepends the scene to item and profile texts;
    ``text`` (``model.text``) gives the item templates and the profiles' history order.
    """
    text = text or TextConfig()
    folder = resolve_source_dir(cfg)
    source = read_source(cfg, folder)
    out = cfg.processed_dir.resolve()  # Ray workers may run in another directory
    _clear(out)

    # Checked tables are materialized: their row counts are the input counts (checks are 1:1).
    checked_items = _run(
        source.items.map_batches(check_items, batch_format="pyarrow",
                                 fn_kwargs={"scene_prefix": scene_prefix, "text": text}),
        f"{cfg.dataset} items in {folder}",
    )
    items = checked_items.groupby("item_id", num_partitions=SHUFFLE_PARTITIONS).map_groups(
        _mark_duplicate_items, batch_format="pyarrow"
    ).materialize()
    catalog = items.filter(expr=col("kind") == "item").select_columns(["item_id", *ITEM_TEXT_FIELDS, "text"])
    catalog = catalog.take_all()  # small: a few thousand items here
    texts = {row["item_id"]: row["text"] for row in catalog}
    # Profiles join unprefixed item texts: render_profile_text adds the scene once, in front.
    plain_texts = {row["item_id"]: render_item_text(row, False, text) for row in catalog}
    item_tally = _write_all(
        items, [("item", None, out / "items", ITEM_OUT_SCHEMA), ("rejected", None, out / "rejected", REJECT_SCHEMA)]
    )

    checked = source.interactions.map_batches(
        check_interactions,
        batch_format="pyarrow",
        fn_kwargs={
            "item_ids": frozenset(texts),
            "has_timestamp": source.has_timestamp,
            "has_rating": source.has_rating,
            "rating_range": source.rating_range,
            "min_rating": cfg.min_rating,
        },
    )
    checked = _run(checked, f"{cfg.dataset} interactions in {folder}")
    rows = (
        checked.groupby("user_id", num_partitions=SHUFFLE_PARTITIONS)
        .map_groups(
            _user_rows,
            batch_format="pyarrow",
            fn_kwargs={
                "texts": texts,
                "plain_texts": plain_texts,
                "max_history": cfg.max_history,
                "profile_items": cfg.profile_items,
                "min_interactions": cfg.min_user_interactions,
                "scene_prefix": scene_prefix,
                "order": text.history_order,
            },
        )
        .materialize()
    )
    row_tally = _write_all(
        rows,
        [
            ("interaction", None, out / "interactions", INTERACTION_SCHEMA),
            ("rejected", None, out / "rejected", REJECT_SCHEMA),
            *[("example", split, out / "examples" / split, EXAMPLE_SCHEMA) for split in SPLITS],
        ],
    )

    item_counts = _table_counts(item_tally, "item")
    inter_counts = _table_counts(row_tally, "interaction")
    item_input, inter_input = checked_items.count(), checked.count()
    if item_input != item_counts["kept"] + item_counts["rejected"] or inter_input != (
        inter_counts["kept"] + inter_counts["rejected"]
    ):
        raise RuntimeError("row accounting broke: input rows != kept + rejected (a bug in preprocess)")
    examples = {s: sum(n for (k, _, sp), n in row_tally.items() if k == "example" and sp == s) for s in SPLITS}
    dropped = sum(n for (k, _, _), n in row_tally.items() if k == "short_user")
    stats = {
        "dataset": cfg.dataset,
        "scene": cfg.scene_name,
        "source_dir": str(folder),
        "scene_prefix": scene_prefix,
        "text": text.model_dump(),
        "settings": cfg.model_dump(include={"max_history", "profile_items", "min_user_interactions", "min_rating"}),
        "items": {"input": item_input, **item_counts},
        "interactions": {"input": inter_input, **inter_counts},
        "users": examples["test"] + dropped,
        "users_with_examples": examples["test"],
        "users_dropped_short": dropped,
        "examples": examples,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    counts = {
        "items": item_counts["kept"],
        "items_rejected": item_counts["rejected"],
        "interactions": inter_counts["kept"],
        "interactions_rejected": inter_counts["rejected"],
        "users": stats["users"],
        "users_dropped_short": dropped,
        **examples,
    }
    return PreprocessResult(processed_dir=out, counts=counts)
