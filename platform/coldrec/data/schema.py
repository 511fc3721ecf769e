"""The canonical schema every reader produces and every later stage reads.

Processed dataset folder (written by ``coldrec preprocess``)::

    <output_dir>/
      items/*.parquet            ITEM_SCHEMA + "text" (the rendered item text)
      interactions/*.parquet     INTERACTION_SCHEMA, validated and de-duplicated
      examples/{train,valid,test}/*.parquet   EXAMPLE_SCHEMA, leave-one-out per user
      rejected/*.parquet         REJECT_SCHEMA: every row set aside, with the reason
      stats.json                 counts: input rows = kept + rejected, per table

Ids are strings everywhere so that several scenes can share one catalog.
"""

from __future__ import annotations

import pyarrow as pa

INTERACTION_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("timestamp", pa.int64()),  # unix seconds; null when the source only has order
        ("position", pa.int64()),  # order within the source, breaks timestamp ties
        ("scene", pa.string()),
        ("rating", pa.float64()),  # null for implicit feedback
    ]
)
REQUIRED_INTERACTION_COLUMNS = ("user_id", "item_id")

ITEM_TEXT_FIELDS = ("title", "categories", "brand", "description", "genres", "year")
ITEM_SCHEMA = pa.schema(
    [("item_id", pa.string()), ("scene", pa.string())] + [(name, pa.string()) for name in ITEM_TEXT_FIELDS]
)
REQUIRED_ITEM_COLUMNS = ("item_id",)

EXAMPLE_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("scene", pa.string()),
        ("history", pa.list_(pa.string())),  # oldest first, capped at data.max_history
        ("target", pa.string()),
        ("split", pa.string()),  # train | valid | test
        ("profile_text", pa.string()),  # the user tower's input: recent item texts, newest first
        ("target_text", pa.string()),  # the item tower's input
    ]
)
SPLITS = ("train", "valid", "test")

REJECT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),  # file (or table) the row came from
        ("row", pa.string()),  # the original row as JSON
        ("reason", pa.string()),
    ]
)
