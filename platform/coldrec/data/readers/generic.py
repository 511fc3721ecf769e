"""Reader for plain CSV / Parquet / JSON Lines files with a canonical -> file column mapping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import ray

from coldrec.config import GenericSource
from coldrec.data.readers.files import (
    RAW_INTERACTION_COLUMNS,
    RAW_ITEM_COLUMNS,
    DataError,
    SourceTables,
    check_columns,
    finish_raw,
    read_delimited,
    read_header,
)
from coldrec.data.schema import ITEM_TEXT_FIELDS, REQUIRED_INTERACTION_COLUMNS, REQUIRED_ITEM_COLUMNS

_EXTENSIONS = {"csv": "csv", "tsv": "csv", "txt": "csv", "parquet": "parquet", "pq": "parquet",
               "jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl"}  # fmt: skip
_OPTIONAL_INTERACTION = ("timestamp", "rating", "position")


def _format_of(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    probe = path if path.is_file() else next(iter(sorted(p for p in path.iterdir() if p.is_file())), path)
    fmt = _EXTENSIONS.get(probe.suffix.lstrip(".").lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the format from the extension; set data.generic.format")
    return fmt


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise DataError(f"generic: file not found: {p}")
    return p


def _read_mapped(
    path: Path,
    src: GenericSource,
    mapping: Mapping[str, str],
    required: Sequence[str],
    optional: Sequence[str],
    columns: Sequence[str],
    scene: str,
) -> tuple[ray.data.Dataset, set[str]]:
    """Read one table, keep the mapped columns under canonical names; return it and those names."""
    fmt = _format_of(path, src.format)
    if fmt == "csv":
        probe = path if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())[0]
        present = read_header(probe, src.delimiter)
    else:
        ds = ray.data.read_parquet(str(path)) if fmt == "parquet" else ray.data.read_json(str(path), lines=True)
        present = ds.schema().names
    # Unmapped canonical columns fall back to a file column of the same name, when present.
    wanted = {name: mapping.get(name, name) for name in (*required, *optional)}
    check_columns(path, present, [wanted[name] for name in required])
    rename = {file_col: name for name, file_col in wanted.items() if file_col in present}
    if fmt == "csv":
        ds = read_delimited(path, rename, delimiter=src.delimiter, quoting=True)
    else:
        ds = ds.select_columns(list(rename)).rename_columns(rename)
    ds = ds.map_batches(finish_raw, batch_format="pyarrow", batch_size=None, fn_args=(columns, scene, path.name))
    return ds, set(rename.values())


def read_generic(src: GenericSource, base: Path, scene: str) -> SourceTables:
    """``base`` resolves relative paths (data.path, else the working directory)."""
    if src.items is None:
        raise DataError("generic: data.generic.items is required (coldrec represents items by their text)")
    interactions, found = _read_mapped(
        _resolve(src.interactions, base), src, src.interaction_columns,
        REQUIRED_INTERACTION_COLUMNS, _OPTIONAL_INTERACTION, RAW_INTERACTION_COLUMNS, scene,
    )  # fmt: skip
    items, _ = _read_mapped(
        _resolve(src.items, base), src, src.item_columns,
        REQUIRED_ITEM_COLUMNS, ITEM_TEXT_FIELDS, RAW_ITEM_COLUMNS, scene,
    )  # fmt: skip
    return SourceTables(interactions, items, has_timestamp="timestamp" in found, has_rating="rating" in found)
