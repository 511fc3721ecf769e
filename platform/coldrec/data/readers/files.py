"""Shared pieces of every reader: the raw table contract, header checks and numbered CSV reads.

A reader turns one source layout into two Ray Datasets with canonical column names
(``RAW_INTERACTION_COLUMNS`` / ``RAW_ITEM_COLUMNS``). Values stay the strings found in
the file (``position`` excepted), so that :mod:`coldrec.data.validate` sees every row as
written, parses it, and can set a bad row aside with its original content.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import ray
from pyarrow import csv as pacsv
from ray.data._internal.datasource.csv_datasource import CSVDatasource

from coldrec.data.schema import ITEM_TEXT_FIELDS

# Interactions: user_id, item_id, timestamp, rating as raw strings; position int64 (our own row
# order); scene and source (the file a row came from) filled by the reader.
RAW_INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "position", "scene", "rating", "source")
RAW_ITEM_COLUMNS = ("item_id", "scene", *ITEM_TEXT_FIELDS, "position", "source")
ROW_NUMBER = "__row"  # per-file row number added by NumberedCSVDatasource


class DataError(ValueError):
    """A source cannot be read: missing file, missing column, unreadable content."""


@dataclass
class SourceTables:
    """What a reader returns: raw canonical tables plus what the validator must know.

    ``has_timestamp`` / ``has_rating``: the source declares these columns, so an empty
    value is an error rather than "not recorded". ``rating_range``: inclusive bounds,
    None when the scale is unknown.
    """

    interactions: ray.data.Dataset
    items: ray.data.Dataset
    has_timestamp: bool
    has_rating: bool
    rating_range: tuple[float, float] | None = None


def require_file(path: Path, dataset: str) -> Path:
    if not path.is_file():
        raise DataError(f"{dataset}: file not found: {path}")
    if not os.access(path, os.R_OK):
        raise DataError(f"{dataset}: file not readable: {path}")
    return path


def recbole_name(header: str) -> str:
    """RecBole headers carry a type suffix (``item_id:token``); the name is before the colon."""
    return header.split(":", 1)[0].strip()


def read_header(path: Path, delimiter: str) -> list[str]:
    """Column names from the first line (type suffixes stripped)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read header: {e}") from e
    if not first.strip():
        raise DataError(f"{path}: empty file (no header row)")
    return [recbole_name(c) for c in next(csv.reader([first.rstrip("\r\n")], delimiter=delimiter))]


def check_columns(path: Path | str, present: Sequence[str], required: Sequence[str]) -> None:
    missing = [c for c in required if c not in present]
    if missing:
        raise DataError(f"{path}: missing required column(s) {missing}; found {list(present)}")


class NumberedCSVDatasource(CSVDatasource):
    """CSV datasource that adds each row's number within its file.

    Ray reads a CSV file in one task, block after block, so a counter here is the exact
    file row order (Ray Data has no ordered row index of its own). The order breaks
    timestamp ties, e.g. keeps the official leave-one-out target last.
    """

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        start = 0
        try:
            for table in super()._read_stream(f, path):
                n = table.num_rows
                yield table.append_column(ROW_NUMBER, pa.array(range(start, start + n), pa.int64()))
                start += n
        except ValueError as e:  # Ray's message hides pyarrow's, which says which line is wrong
            raise DataError(f"{path}: unreadable: {e.__cause__ or e}") from e


def read_delimited(
    path: Path,
    rename: Mapping[str, str],
    *,
    delimiter: str = "\t",
    quoting: bool = False,
) -> ray.data.Dataset:
    """Read a delimited file with a header row as all-string columns, numbered by row.

    ``rename`` maps file column (type suffix stripped) -> canonical name; other columns are
    not parsed. Tab layouts here are read without quote handling: titles contain quotes.
    """
    header = read_header(path, delimiter)
    check_columns(path, header, list(rename))
    read_options = pacsv.ReadOptions(column_names=header, skip_rows=1, use_threads=False)
    parse_options = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoting else False)
    convert_options = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in header}, include_columns=list(rename)
    )
    source = NumberedCSVDatasource(
        str(path),
        arrow_csv_args={
            "read_options": read_options,
            "parse_options": parse_options,
            "convert_options": convert_options,
        },
    )
    # One block per file: these files are small, and every extra block is a task to schedule.
    ds = ray.data.read_datasource(source, override_num_blocks=1)
    return ds.rename_columns(dict(rename)) if any(k != v for k, v in rename.items()) else ds


def read_lookup(path: Path) -> dict[str, str]:
    """A small two-column key TAB value table without header (item2index), read directly."""
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["key", "value"]),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={"key": pa.string(), "value": pa.string()}),
    )
    return dict(zip(table.column("key").to_pylist(), table.column("value").to_pylist()))


def finish_raw(
    table: pa.Table, columns: Sequence[str], scene: str, source: str, offset: int = 0
) -> pa.Table:
    """Give a batch exactly ``columns``: fill scene/source, position from the row number, nulls."""
    n = table.num_rows
    out = {}
    for name in columns:
        if name == "scene":
            out[name] = pa.array([scene] * n, pa.string())
        elif name == "source":
            out[name] = pa.array([source] * n, pa.string())
        elif name == "position":
            if "position" in table.column_names:
                out[name] = table.column("position").cast(pa.int64())
            elif ROW_NUMBER in table.column_names:
                out[name] = pc.add(table.column(ROW_NUMBER), offset)
            else:
                out[name] = pa.nulls(n, pa.int64())
        elif name in table.column_names:
            out[name] = table.column(name).cast(pa.string())
        else:
            out[name] = pa.nulls(n, pa.string())
    return pa.table(out)
