"""Readers for the two Amazon layouts: the UniSRec "Scientific" set and ReChorus "Office"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import ray

from coldrec.data.readers.files import (
    RAW_INTERACTION_COLUMNS,
    RAW_ITEM_COLUMNS,
    SourceTables,
    finish_raw,
    read_delimited,
    read_lookup,
    require_file,
)


def _items_from_text(text_path: Path, index_path: Path, id_column: str, scene: str) -> ray.data.Dataset:
    """ASIN -> text rows, re-keyed to the integer index the interaction files use.

    The text is "title. categories. brand." run together; it goes into ``title`` whole
    because the parts cannot be split reliably (titles contain periods too). An ASIN
    missing from the index keeps an empty item_id, so validation rejects it, counted.
    """
    asin_to_index = read_lookup(require_file(index_path, scene))
    ds = read_delimited(text_path, {id_column: "asin", "text": "title"})

    def rekey(batch: pa.Table) -> pa.Table:
        ids = [asin_to_index.get(a, "") for a in batch.column("asin").to_pylist()]
        batch = batch.append_column("item_id", pa.array(ids, pa.string()))
        return finish_raw(batch, RAW_ITEM_COLUMNS, scene, text_path.name)

    return ds.map_batches(rekey, batch_format="pyarrow", batch_size=None)


def _sequence_rows(group: dict[str, np.ndarray], scene: str, source: str) -> pa.Table:
    """Rebuild one user's whole item sequence from all of their (history, target) rows.

    test.inter alone holds the last 51 items; three users have longer sequences whose
    earliest items only the train rows keep. Every row is "history -> next item", with
    history capped at the longest length seen, so chaining "last L items -> next item"
    from the shortest prefix walks the whole sequence in order.
    """
    histories = [h.split() for h in group["history"]]
    targets = list(group["target"])
    cap = max(len(h) for h in histories)
    next_item = {tuple(h): t for h, t in zip(histories, targets)}
    seq = list(min(histories, key=len))
    while (key := tuple(seq[-cap:])) in next_item:
        seq.append(next_item.pop(key))
    if len(seq) != len(targets) + 1:
        # Not a clean chain (should not happen): fall back to the longest row, the test row.
        longest = max(range(len(histories)), key=lambda i: len(histories[i]))
        seq = histories[longest] + [targets[longest]]
    user = str(group["user_id"][0])
    table = pa.table(
        {
            "user_id": pa.array([user] * len(seq), pa.string()),
            "item_id": pa.array(seq, pa.string()),
            "position": pa.array(range(len(seq)), pa.int64()),
        }
    )
    return finish_raw(table, RAW_INTERACTION_COLUMNS, scene, source)


def read_scientific(folder: Path, scene: str) -> SourceTables:
    """UniSRec "Scientific": items from Scientific.text, sequences from the .inter split files."""
    items = _items_from_text(
        require_file(folder / "Scientific.text", scene), folder / "Scientific.item2index", "item_id", scene
    )
    columns = {"user_id": "user_id", "item_id_list": "history", "item_id": "target"}
    splits = [
        read_delimited(require_file(folder / f"Scientific.{s}.inter", scene), columns)
        for s in ("train", "valid", "test")
    ]
    rows = splits[0].union(*splits[1:]).select_columns(["user_id", "history", "target"])
    interactions = rows.groupby("user_id", num_partitions=4).map_groups(
        _sequence_rows,
        batch_format="numpy",
        fn_kwargs={"scene": scene, "source": "Scientific.{train,valid,test}.inter"},
    )
    return SourceTables(interactions, items, has_timestamp=False, has_rating=False)


def read_office(folder: Path, scene: str) -> SourceTables:
    """ReChorus "Office": train/dev/test.csv in that global order; items from Office.text."""
    items = _items_from_text(require_file(folder / "Office.text", scene), folder / "Office.item2index", "id", scene)
    columns = {"user_id": "user_id", "item_id": "item_id", "time": "timestamp"}
    parts, offset = [], 0
    for name in ("train.csv", "dev.csv", "test.csv"):
        ds = read_delimited(require_file(folder / name, scene), columns)
        # position = global row order (train, dev, test) so time ties keep the official target last.
        parts.append(
            ds.map_batches(
                finish_raw,
                batch_format="pyarrow",
                batch_size=None,
                fn_args=(RAW_INTERACTION_COLUMNS, scene, name, offset),
            )
        )
        if name != "test.csv":
            offset += ds.count()
    return SourceTables(parts[0].union(*parts[1:]), items, has_timestamp=True, has_rating=False)
