"""Readers: one per source layout, each returning raw canonical tables (:class:`SourceTables`).

``read_source(cfg, folder)`` picks the reader for ``cfg.dataset``; ``folder`` is the
dataset's directory (see :func:`coldrec.data.fetch.resolve_source_dir`).
"""

from __future__ import annotations

from pathlib import Path

from coldrec.config import DataConfig
from coldrec.data.readers.amazon import read_office, read_scientific
from coldrec.data.readers.files import RAW_INTERACTION_COLUMNS, RAW_ITEM_COLUMNS, DataError, SourceTables
from coldrec.data.readers.generic import read_generic
from coldrec.data.readers.movielens import read_ml100k

__all__ = [
    "RAW_INTERACTION_COLUMNS",
    "RAW_ITEM_COLUMNS",
    "DataError",
    "SourceTables",
    "read_source",
    "read_scientific",
    "read_office",
    "read_ml100k",
    "read_generic",
]


def read_source(cfg: DataConfig, folder: Path) -> SourceTables:
    """Lazy Ray Datasets for ``cfg.dataset`` read from ``folder`` (nothing executes yet)."""
    folder = Path(folder)
    if cfg.dataset == "generic":
        if cfg.generic is None:
            raise DataError("dataset 'generic' needs a data.generic section (files and column mapping)")
        return read_generic(cfg.generic, folder, cfg.scene_name)
    if not folder.is_dir():
        raise DataError(f"{cfg.dataset}: dataset folder not found: {folder}")
    readers = {"amazon-scientific": read_scientific, "amazon-office": read_office, "ml-100k": read_ml100k}
    return readers[cfg.dataset](folder, cfg.scene_name)
