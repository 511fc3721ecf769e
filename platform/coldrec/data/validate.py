"""Row checks: parse raw reader batches into typed canonical rows, or set them aside with a reason.

Each check function maps one raw batch (pyarrow, columns of
``coldrec.data.readers.RAW_*_COLUMNS``) to the typed columns plus ``reason`` (null
when the row is kept) and ``row`` (the original row as JSON, only for rejected rows),
one output row per input row, so input rows = kept + rejected holds by construction.
Duplicates need a whole group to see and are flagged by :func:`first_of_duplicates`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from coldrec.config import TextConfig
from coldrec.data.schema import ITEM_TEXT_FIELDS
from coldrec.text import render_item_text

# Reasons a row is rejected (stats.json counts them by these names).
MISSING_USER = "missing_user_id"
MISSING_ITEM = "missing_item_id"
MISSING_TIMESTAMP = "missing_timestamp"
BAD_TIMESTAMP = "bad_timestamp"
MISSING_RATING = "missing_rating"
BAD_RATING = "bad_rating"
RATING_OUT_OF_RANGE = "rating_out_of_range"
BELOW_MIN_RATING = "below_min_rating"
UNKNOWN_ITEM = "unknown_item"
DUPLICATE = "duplicate"  # exact (user_id, item_id, timestamp) repeat
MISSING_TEXT = "missing_text"  # an item with no text cannot be encoded
DUPLICATE_ITEM = "duplicate_item"  # a second row for an item_id already in the catalog


def _blank(values: pd.Series) -> np.ndarray:
    """True where a raw string is null or only whitespace."""
    return values.isna().to_numpy() | (values.fillna("").str.strip() == "").to_numpy()


def parse_timestamps(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Raw strings -> (unix seconds int64, parsed mask). Accepts numbers and ISO dates.

    Fractional seconds are floored; dates without a zone are taken as UTC.
    """
    text = raw.fillna("").str.strip()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64")
    ok = np.isfinite(numbers)
    seconds = np.zeros(len(text), dtype="int64")
    seconds[ok] = np.floor(numbers[ok]).astype("int64")
    dates = (~ok) & (text != "").to_numpy()
    if dates.any():
        parsed = pd.to_datetime(text[dates], errors="coerce", utc=True, format="ISO8601")
        good = parsed.notna().to_numpy()
        epoch = pd.Timestamp(0, tz="UTC")
        idx = np.flatnonzero(dates)[good]
        seconds[idx] = ((parsed[good] - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype="int64")
        ok[idx] = True
    return seconds, ok


def _row_json(frame: pd.DataFrame, mask: np.ndarray, columns: Sequence[str]) -> list[str | None]:
    out: list[str | None] = [None] * len(frame)
    for i in np.flatnonzero(mask):
        out[i] = json.dumps({c: _plain(frame[c].iat[i]) for c in columns}, ensure_ascii=False)
    return out


def _plain(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _first_reason(checks: list[tuple[np.ndarray, str]], n: int) -> np.ndarray:
    """The first failing check names the reason; later checks do not overwrite it."""
    reason = np.full(n, None, dtype=object)
    for failed, name in checks:
        reason[(reason == None) & failed] = name  # noqa: E711 (elementwise)
    return reason


def check_interactions(
    batch: pa.Table,
    item_ids: frozenset[str],
    has_timestamp: bool,
    has_rating: bool,
    rating_range: tuple[float, float] | None = None,
    min_rating: float | None = None,
) -> pa.Table:
    """Typed interactions + ``source``, ``reason``, ``row`` for one raw batch."""
    frame = batch.to_pandas()
    n = len(frame)
    user, item = frame["user_id"].fillna("").str.strip(), frame["item_id"].fillna("").str.strip()
    ts_blank, rating_blank = _blank(frame["timestamp"]), _blank(frame["rating"])
    seconds, ts_ok = parse_timestamps(frame["timestamp"])
    rating = pd.to_numeric(frame["rating"].fillna("").str.strip(), errors="coerce").to_numpy(dtype="float64")
    rating_ok = np.isfinite(rating)
    lo, hi = rating_range or (-np.inf, np.inf)
    checks = [
        ((user == "").to_numpy(), MISSING_USER),
        ((item == "").to_numpy(), MISSING_ITEM),
        (ts_blank & has_timestamp, MISSING_TIMESTAMP),
        (~ts_blank & ~ts_ok, BAD_TIMESTAMP),
        (rating_blank & has_rating, MISSING_RATING),
        (~rating_blank & ~rating_ok, BAD_RATING),
        (rating_ok & ((rating < lo) | (rating > hi)), RATING_OUT_OF_RANGE),
        (rating_ok & (rating < (min_rating if min_rating is not None else -np.inf)), BELOW_MIN_RATING),
        (~item.isin(item_ids).to_numpy(), UNKNOWN_ITEM),
    ]
    reason = _first_reason(checks, n)
    raw_columns = ["user_id", "item_id", "timestamp", "rating", "position"]
    return pa.table(
        {
            "user_id": pa.array(user, pa.string()),
            "item_id": pa.array(item, pa.string()),
            "timestamp": pa.array(seconds, pa.int64(), mask=~ts_ok),
            "position": batch.column("position"),
            "scene": batch.column("scene"),
            "rating": pa.array(rating, pa.float64(), mask=~rating_ok),
            "source": batch.column("source"),
            "reason": pa.array(reason, pa.string()),
            "row": pa.array(_row_json(frame, reason != None, raw_columns), pa.string()),  # noqa: E711
        }
    )


def check_items(batch: pa.Table, scene_prefix: bool = False, text: TextConfig | None = None) -> pa.Table:
    """Typed items + ``text`` rendered by ``text``'s templates + ``position``, ``source``, ``reason``, ``row``."""
    frame = batch.to_pandas()
    item = frame["item_id"].fillna("").str.strip()
    records = frame.to_dict("records")
    texts = [render_item_text(r, scene_prefix, text) for r in records]
    bare = [render_item_text(r, False, text) for r in records]  # without the scene: is there any text?
    checks = [((item == "").to_numpy(), MISSING_ITEM), (np.array([t == "" for t in bare], bool), MISSING_TEXT)]
    reason = _first_reason(checks, len(frame))
    columns = {"item_id": pa.array(item, pa.string()), "scene": batch.column("scene")}
    for name in ITEM_TEXT_FIELDS:
        columns[name] = batch.column(name)
    columns.update(
        text=pa.array(texts, pa.string()),
        position=batch.column("position"),
        source=batch.column("source"),
        reason=pa.array(reason, pa.string()),
        row=pa.array(_row_json(frame, reason != None, ["item_id", *ITEM_TEXT_FIELDS]), pa.string()),  # noqa: E711
    )
    return pa.table(columns)


def first_of_duplicates(keys: Sequence[tuple], order: Sequence[int]) -> list[bool]:
    """For rows visited in ``order``, True for each row whose key was already seen."""
    seen: set[tuple] = set()
    dup = [False] * len(keys)
    for i in order:
        if keys[i] in seen:
            dup[i] = True
        else:
            seen.add(keys[i])
    return dup
