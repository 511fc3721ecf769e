"""Preprocessing: bad rows set aside and counted, leave-one-out examples, the Scientific split."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from coldrec.config import DataConfig, GenericSource, TextConfig
from coldrec.data.preprocess import preprocess
from coldrec.data.processed import load_examples, load_items, load_stats, processed_text
from coldrec.data.readers import DataError
from coldrec.data.schema import EXAMPLE_SCHEMA, INTERACTION_SCHEMA, REJECT_SCHEMA

ITEMS_CSV = """item_id,title,genres
i1,Alpha,Drama
i2,Beta,Comedy
i3,Gamma,Action
i4,Delta,
i2,Beta again,Comedy
i5,,
,Nameless,Drama
"""
# uid,iid,ts,stars; the comment column says what the row tests.
INTERACTIONS = [
    ("u1", "i1", "100", "5", "kept"),
    ("u1", "i2", "200", "4", "kept"),
    ("u1", "i3", "300", "3", "kept"),
    ("u1", "i4", "400", "5", "kept"),
    ("u1", "i4", "400", "5", "duplicate"),
    ("u1", "i1", "", "5", "missing_timestamp"),
    ("u2", "i1", "abc", "4", "bad_timestamp"),
    ("", "i1", "100", "4", "missing_user_id"),
    ("u2", "", "100", "4", "missing_item_id"),
    ("u2", "i9", "100", "4", "unknown_item"),
    ("u2", "i5", "100", "4", "unknown_item"),  # its item row was rejected (no text)
    ("u2", "i2", "2020-01-01T00:00:00", "x", "bad_rating"),
    ("u2", "i3", "150", "1", "below_min_rating"),
    ("u3", "i1", "100", "5", "kept"),
    ("u3", "i2", "50", "4", "kept"),  # u3 keeps 2 rows: too short for leave-one-out
    ("u2", "i1", "10", "4", "kept"),
    ("u2", "i2", "20", "4", "kept"),
    ("u2", "i3", "2020-01-01", "5", "kept"),  # ISO dates parse too
]


def _generic_config(tmp_path, **overrides) -> DataConfig:
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    lines = ["uid,iid,ts,stars,note"] + [",".join(row) for row in INTERACTIONS]
    (tmp_path / "interactions.csv").write_text("\n".join(lines) + "\n")
    source = GenericSource(
        interactions="interactions.csv",
        items="items.csv",
        interaction_columns={"user_id": "uid", "item_id": "iid", "timestamp": "ts", "rating": "stars"},
    )
    settings = dict(min_rating=2, max_history=2, profile_items=1, output_dir=str(tmp_path / "out"))
    return DataConfig(dataset="generic", scene="shop", path=str(tmp_path), generic=source, **(settings | overrides))


def test_bad_rows_are_set_aside_and_counted(ray_session, tmp_path):
    cfg = _generic_config(tmp_path)
    result = preprocess(cfg)
    stats = load_stats(result.processed_dir)
    expected = pd.Series([r[4] for r in INTERACTIONS]).value_counts().to_dict()
    kept = expected.pop("kept")
    assert stats["interactions"] == {
        "input": len(INTERACTIONS), "kept": kept, "rejected": len(INTERACTIONS) - kept, "rejected_by_reason": expected,
    }  # fmt: skip
    assert stats["items"] == {
        "input": 7, "kept": 4, "rejected": 3,
        "rejected_by_reason": {"duplicate_item": 1, "missing_item_id": 1, "missing_text": 1},
    }  # fmt: skip
    assert stats["users_dropped_short"] == 1 and stats["examples"] == {"train": 1, "valid": 2, "test": 2}
    assert result.counts["interactions"] == kept and result.counts["users"] == 3

    rejected = pq.read_table(result.processed_dir / "rejected")
    assert rejected.schema.equals(REJECT_SCHEMA) and rejected.num_rows == 3 + len(INTERACTIONS) - kept
    bad_ts = [json.loads(r["row"]) | r for r in rejected.to_pylist() if r["reason"] == "bad_timestamp"]
    assert bad_ts[0]["timestamp"] == "abc" and bad_ts[0]["user_id"] == "u2" and bad_ts[0]["source"] == "interactions.csv"
    duplicate_item = [json.loads(r["row"]) for r in rejected.to_pylist() if r["reason"] == "duplicate_item"]
    assert duplicate_item[0]["title"] == "Beta again"  # the first row of an item id wins

    interactions = pq.read_table(result.processed_dir / "interactions")
    assert interactions.schema.equals(INTERACTION_SCHEMA) and interactions.num_rows == kept
    assert "u3" in interactions.column("user_id").to_pylist()  # short users stay in interactions


def test_examples_leave_one_out(ray_session, tmp_path):
    cfg = _generic_config(tmp_path)
    out = preprocess(cfg, scene_prefix=True).processed_dir
    assert pq.read_table(out / "examples" / "test").schema.equals(EXAMPLE_SCHEMA)
    test = load_examples(out, "test").set_index("user_id")
    valid = load_examples(out, "valid").set_index("user_id")
    train = load_examples(out, "train")
    # u1: i1 i2 i3 i4 by time; history capped at 2 (max_history), profile = newest item only.
    assert list(test.loc["u1", "history"]) == ["i2", "i3"] and test.loc["u1", "target"] == "i4"
    assert list(valid.loc["u1", "history"]) == ["i1", "i2"] and valid.loc["u1", "target"] == "i3"
    assert train.user_id.tolist() == ["u1"] and list(train.history[0]) == ["i1"] and train.target[0] == "i2"
    assert test.loc["u1", "profile_text"] == "shop: Gamma. Action"  # scene prefixed once
    assert test.loc["u1", "target_text"] == "shop: Delta" and test.loc["u1", "split"] == "test"
    assert list(test.loc["u2", "history"]) == ["i1", "i2"] and test.loc["u2", "target"] == "i3"
    assert "u3" not in test.index
    items = load_items(out).set_index("item_id")
    assert sorted(items.index) == ["i1", "i2", "i3", "i4"] and items.loc["i1", "text"] == "shop: Alpha. Drama"

    # Re-running overwrites: same counts, no files left over from the first run.
    files = sorted(p.name for p in out.rglob("*.parquet"))
    preprocess(cfg, scene_prefix=True)
    assert len(list(out.rglob("*.parquet"))) == len(files)
    assert load_stats(out)["examples"] == {"train": 1, "valid": 2, "test": 2}


def test_templates_and_history_order_shape_every_text(ray_session, tmp_path):
    """model.text reaches the stored item texts, the profiles and stats.json (which evaluation and
    training check their configs against)."""
    text = TextConfig(fields=["genres", "title"], labels=True, history_order="oldest-first")
    out = preprocess(_generic_config(tmp_path, profile_items=2), scene_prefix=True, text=text).processed_dir
    test = load_examples(out, "test").set_index("user_id")
    assert test.loc["u1", "profile_text"] == "genres: Comedy. title: Beta | genres: Action. title: Gamma | shop"
    assert test.loc["u1", "target_text"] == "shop: title: Delta"
    assert load_items(out).set_index("item_id").loc["i1", "text"] == "shop: genres: Drama. title: Alpha"
    assert processed_text(out) == text


def _official(datasets_dir, split: str) -> list[tuple[str, str, str]]:
    path = datasets_dir / "amazon-scientific" / f"Scientific.{split}.inter"
    frame = pd.read_csv(path, sep="\t", dtype=str)
    return sorted(zip(*(frame[c] for c in frame.columns)))


def test_scientific_matches_the_official_split(ray_session, datasets_dir, tmp_path):
    """The proof that the benchmark split is honoured: every example equals a row of the official files."""
    result = preprocess(DataConfig(dataset="amazon-scientific", output_dir=str(tmp_path)))
    for split in ("test", "valid", "train"):
        ours = load_examples(result.processed_dir, split)
        rows = sorted(zip(ours.user_id, (" ".join(h) for h in ours.history), ours.target))
        assert rows == _official(datasets_dir, split), split
    assert result.counts["train"] == 34101 and result.counts["test"] == result.counts["users"] == 8442
    assert result.counts["items"] == 4385 and result.counts["interactions_rejected"] == 0
    # 59,384 rows in test.inter + 43 earlier items of the 3 users with more than 51 (see test_data_readers)
    assert result.counts["interactions"] == 59427


@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset,counts",
    [("ml-100k", (943, 1682, 100000, 97171)), ("amazon-office", (4905, 2420, 53258, 38543))],
)
def test_real_datasets_preprocess(ray_session, tmp_path, dataset, counts):
    c = preprocess(DataConfig(dataset=dataset, output_dir=str(tmp_path))).counts
    assert (c["users"], c["items"], c["interactions"], c["train"]) == counts


def test_malformed_file_stops_with_its_name(ray_session, tmp_path):
    (tmp_path / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t3\t100\n1\t2\n"
    )
    (tmp_path / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tA\t1999\tDrama\n"
    )
    with pytest.raises(DataError, match=r"ml-100k\.inter: unreadable: .*Expected 4 columns"):
        preprocess(DataConfig(dataset="ml-100k", path=str(tmp_path), output_dir=str(tmp_path / "out")))


def test_examples_are_read_in_the_same_order_whatever_the_files_are_named(tmp_path):
    """A preprocess run names its files afresh; a seeded sample of the examples must not change with them."""
    rows = pd.DataFrame({"user_id": ["b", "a", "c", "a"], "history": [["i1"], ["i1", "i2"], [], ["i1"]],
                         "target": ["i2", "i3", "i1", "i2"]})
    orders = []
    for run, names in enumerate((("x", "y"), ("y", "x"))):
        folder = tmp_path / str(run) / "examples" / "train"
        folder.mkdir(parents=True)
        rows.iloc[:2].to_parquet(folder / f"{names[0]}.parquet")  # the same rows, in files read in another order
        rows.iloc[2:].to_parquet(folder / f"{names[1]}.parquet")
        orders.append(load_examples(tmp_path / str(run), "train"))
    pd.testing.assert_frame_equal(orders[0], orders[1])
    assert list(zip(orders[0].user_id, orders[0].history.map(len))) == [("a", 1), ("a", 2), ("b", 1), ("c", 0)]
