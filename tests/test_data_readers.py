"""Readers on the three real layouts and on generic CSV / Parquet / JSONL, plus read errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from coldrec.config import DataConfig, GenericSource
from coldrec.data.readers import RAW_INTERACTION_COLUMNS, RAW_ITEM_COLUMNS, DataError, read_source

# (users, items, interactions). amazon-scientific is read (and counted) by the split test in
# test_preprocess.py, to read it once: 8,442 / 4,385 / 59,427. Its test.inter holds 59,384 rows
# (histories capped at 50); three users have longer sequences whose 43 earliest items only
# train.inter keeps, and the reader recovers them so the train examples match train.inter.
REAL = {
    "amazon-office": (4905, 2420, 53258),
    "ml-100k": (943, 1682, 100000),
}


@pytest.mark.parametrize("dataset", sorted(REAL))
def test_real_dataset_counts(ray_session, datasets_dir, dataset):
    tables = read_source(DataConfig(dataset=dataset), datasets_dir / dataset)
    inter = tables.interactions.to_pandas()
    items = tables.items.to_pandas()
    users, n_items, n_inter = REAL[dataset]
    assert list(inter.columns) == list(RAW_INTERACTION_COLUMNS)
    assert list(items.columns) == list(RAW_ITEM_COLUMNS)
    assert (len(inter), inter.user_id.nunique(), len(items), items.item_id.nunique()) == (n_inter, users, n_items, n_items)
    assert set(inter.item_id) <= set(items.item_id)  # ids match the official split files
    assert (inter.scene == dataset).all() and items.title.str.len().gt(0).all()
    assert inter.position.notna().all()


def test_office_positions_keep_official_targets_last(ray_session, datasets_dir):
    inter = read_source(DataConfig(dataset="amazon-office"), datasets_dir / "amazon-office").interactions.to_pandas()
    assert inter.position.is_unique
    # global order train, dev, test: every test row comes after every train row
    assert inter[inter.source == "test.csv"].position.min() > inter[inter.source == "train.csv"].position.max()


def _generic_frames():
    inter = pd.DataFrame(
        {"uid": ["u1", "u1", "u2"], "iid": ["a", "b", "a"], "ts": [10, 20, 30], "stars": [4.0, 5.0, 3.0]}
    )
    items = pd.DataFrame({"asin": ["a", "b"], "name": ["Alpha, the first", 'Beta "two"'], "genres": ["x", "y"]})
    return inter, items


def _write(frame: pd.DataFrame, path, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_generic_reader_with_column_mapping(ray_session, tmp_path, fmt):
    inter, items = _generic_frames()
    _write(inter, tmp_path / f"inter.{fmt}", fmt)
    _write(items, tmp_path / f"items.{fmt}", fmt)
    source = GenericSource(
        interactions=f"inter.{fmt}",
        items=f"items.{fmt}",
        interaction_columns={"user_id": "uid", "item_id": "iid", "timestamp": "ts", "rating": "stars"},
        item_columns={"item_id": "asin", "title": "name"},  # genres: same name in the file
    )
    tables = read_source(DataConfig(dataset="generic", generic=source, scene="shop"), tmp_path)
    got = tables.interactions.to_pandas().sort_values("timestamp", key=lambda s: s.astype(int))
    assert got.user_id.tolist() == ["u1", "u1", "u2"] and got.item_id.tolist() == ["a", "b", "a"]
    assert got.timestamp.tolist() == ["10", "20", "30"] and float(got.rating.iloc[1]) == 5.0
    assert tables.has_timestamp and tables.has_rating and (got.scene == "shop").all()
    got_items = tables.items.to_pandas().sort_values("item_id")
    assert got_items.title.tolist() == ["Alpha, the first", 'Beta "two"'] and got_items.genres.tolist() == ["x", "y"]


def test_missing_column_names_file_and_column(ray_session, tmp_path):
    (tmp_path / "ml-100k.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    (tmp_path / "ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
    with pytest.raises(DataError, match=r"ml-100k\.inter.*rating"):
        read_source(DataConfig(dataset="ml-100k"), tmp_path)


def test_generic_missing_mapped_column(ray_session, tmp_path):
    inter, items = _generic_frames()
    _write(inter, tmp_path / "inter.parquet", "parquet")
    _write(items, tmp_path / "items.csv", "csv")
    source = GenericSource(interactions="inter.parquet", items="items.csv", interaction_columns={"user_id": "user"})
    with pytest.raises(DataError, match=r"inter\.parquet.*'user'"):
        read_source(DataConfig(dataset="generic", generic=source), tmp_path)


def test_missing_file_names_the_file(ray_session, tmp_path):
    (tmp_path / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
    with pytest.raises(DataError, match=r"ml-100k\.item"):
        read_source(DataConfig(dataset="ml-100k"), tmp_path)
    with pytest.raises(DataError, match=r"nope\.csv"):
        read_source(DataConfig(dataset="generic", generic=GenericSource(interactions="nope.csv", items="x")), tmp_path)
