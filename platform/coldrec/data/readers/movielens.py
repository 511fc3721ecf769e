"""Reader for MovieLens 100K in RecBole atomic files (ml-100k.inter / ml-100k.item)."""

from __future__ import annotations

from pathlib import Path

from coldrec.data.readers.files import (
    RAW_INTERACTION_COLUMNS,
    RAW_ITEM_COLUMNS,
    SourceTables,
    finish_raw,
    read_delimited,
    require_file,
)

ML_RATING_RANGE = (1.0, 5.0)  # MovieLens stars


def read_ml100k(folder: Path, scene: str) -> SourceTables:
    inter_path = require_file(folder / "ml-100k.inter", scene)
    item_path = require_file(folder / "ml-100k.item", scene)
    interactions = read_delimited(
        inter_path, {"user_id": "user_id", "item_id": "item_id", "rating": "rating", "timestamp": "timestamp"}
    ).map_batches(
        finish_raw, batch_format="pyarrow", batch_size=None, fn_args=(RAW_INTERACTION_COLUMNS, scene, inter_path.name)
    )
    items = read_delimited(
        item_path, {"item_id": "item_id", "movie_title": "title", "release_year": "year", "class": "genres"}
    ).map_batches(finish_raw, batch_format="pyarrow", batch_size=None, fn_args=(RAW_ITEM_COLUMNS, scene, item_path.name))
    return SourceTables(interactions, items, has_timestamp=True, has_rating=True, rating_range=ML_RATING_RANGE)
