"""Index build (Ray Data actor pool + FAISS) and the ItemIndex retrieval class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coldrec.config import PipelineConfig
from coldrec.index.build import build_index
from coldrec.index.item_index import ItemIndex, resolve_index_dir, stable_faiss_id
from coldrec.text import render_item_text

TITLES = [
    "Digital caliper 6 inch stainless steel",
    "Nitrile exam gloves, box of 100",
    "Safety goggles with anti-fog lens",
    "Laboratory glass beaker set 250 ml",
    "Cordless drill driver 20V",
    "Adhesive backed sanding roll 80 grit",
    "Micrometer 0-1 inch outside",
    "Pipette tips 1000 ul sterile",
    "Digital multimeter auto ranging",
    "Stainless steel hex bolts M8",
    "Infrared thermometer gun",
    "Heavy duty packing tape",
]


def write_items(folder: Path, rows: list[dict], files: int = 2) -> Path:
    """A processed-dataset ``items/`` folder (ITEM_SCHEMA + text) split over a few parquet files."""
    frame = pd.DataFrame(rows)
    for col in ("scene", "title", "categories", "brand", "description", "genres", "year"):
        if col not in frame:
            frame[col] = None
    rendered = [render_item_text(r) for r in frame.to_dict("records")]
    frame["text"] = frame["text"].fillna(pd.Series(rendered)) if "text" in frame else rendered
    (folder / "items").mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_parquet(folder / "items" / f"part-{i}.parquet", index=False)
    return folder


def small_catalog(folder: Path) -> Path:
    rows = [
        {"item_id": f"i{n}", "scene": "shop", "title": title, "categories": "Industrial & Scientific"}
        for n, title in enumerate(TITLES)
    ]
    # Bad rows are set aside and counted, never indexed.
    rows.append({"item_id": "i0", "scene": "shop", "title": "duplicate id"})
    rows.append({"item_id": "blank", "scene": "shop", "title": None, "text": "  "})
    return write_items(folder, rows)


def tiny_config(tmp_path: Path, backbone: str, scene: str = "shop") -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "data": {"dataset": "generic", "scene": scene, "output_dir": str(tmp_path / "data")},
            "model": {"backbone": backbone},
            "train": {"storage_path": str(tmp_path / "runs")},
            "index": {"output_dir": str(tmp_path / "index"), "batch_size": 4, "num_actors": 1},
        }
    )


@pytest.fixture(scope="module")
def built(ray_session, tiny_backbone, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("index")
    cfg = tiny_config(tmp, tiny_backbone)
    small_catalog(cfg.data.processed_dir)
    return cfg, build_index(cfg)


def test_build_index_writes_version_folder_and_latest(built, tiny_backbone):
    cfg, version_dir = built
    assert version_dir.parent == Path(cfg.index.output_dir).resolve() / "shop"
    assert {p.name for p in version_dir.iterdir()} == {"items.faiss", "items.parquet", "meta.json"}
    meta = json.loads((version_dir / "meta.json").read_text())
    assert meta["model_version"] == "untrained"
    assert meta["model_path"] == str(Path(tiny_backbone).resolve())
    assert meta["count"] == len(TITLES) and meta["dim"] == 32 and meta["factory"] == "Flat"
    assert meta["skipped"] == {"duplicate item_id": 1, "empty text": 1}
    assert (version_dir.parent / "LATEST").read_text().strip() == version_dir.name
    assert resolve_index_dir(version_dir.parent) == version_dir
    rows = pd.read_parquet(version_dir / "items.parquet")
    assert list(rows.columns[:2]) == ["faiss_id", "item_id"]
    assert rows.set_index("item_id").loc["i0", "title"] == TITLES[0]  # the first of the duplicates


def test_search_finds_each_item_by_its_own_vector(built):
    index = ItemIndex.load(built[0].index.output_dir + "/shop")
    assert len(index) == len(TITLES)
    ids = [f"i{n}" for n in range(len(TITLES))]
    queries = np.stack([index.vector(i) for i in ids])
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-4)
    for item_id, hits in zip(ids, index.search(queries, k=3)):
        assert hits[0][0] == item_id and hits[0][1] == pytest.approx(1.0, abs=1e-4)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert index.get("i1")["title"] == TITLES[1]
    assert index.get("i1")["faiss_id"] == stable_faiss_id("i1")
    assert index.get("missing") is None


def test_exclude_add_remove_and_save(built, tmp_path):
    index = ItemIndex.load(built[1])
    query = index.vector("i0")
    hits = index.search(query, k=3, exclude=[{"i0", "i5"}])[0]
    assert len(hits) == 3 and not {"i0", "i5"} & {h[0] for h in hits}
    # every item excluded but one: the search widens until it has seen the catalog
    others = {f"i{n}" for n in range(1, len(TITLES))}
    assert [h[0] for h in index.search(query, k=5, exclude=[others])[0]] == ["i0"]

    vector = -query  # the opposite direction: a new item no query near i0 would return
    index.upsert([{"item_id": "new", "scene": "shop", "title": "New thing", "text": "New thing"}], vector[None])
    assert len(index) == len(TITLES) + 1
    assert index.search(vector, k=1)[0][0][0] == "new"
    index.upsert([{"item_id": "new", "scene": "other", "title": "Renamed", "text": "Renamed"}], query[None])
    assert len(index) == len(TITLES) + 1 and index.get("new")["title"] == "Renamed"
    assert np.allclose(index.vector("new"), query)
    assert index.search(query, k=1, scene="other")[0] == [("new", pytest.approx(1.0, abs=1e-4))]

    assert index.remove(["new", "i3", "unknown"]) == 2
    assert len(index) == len(TITLES) - 1 and index.get("i3") is None
    assert all(h[0] != "i3" for h in index.search(index.vector("i4"), k=len(TITLES))[0])
    with pytest.raises(KeyError):
        index.vector("i3")
    with pytest.raises(ValueError, match="dim"):
        index.search(np.zeros((1, 5), dtype=np.float32), k=1)

    reloaded = ItemIndex.load(index.save(tmp_path / "copy"))
    assert len(reloaded) == len(index) and reloaded.get("i3") is None
    assert json.loads((tmp_path / "copy" / "meta.json").read_text())["count"] == len(index)


def test_build_index_reports_missing_catalog(tmp_path, tiny_backbone):
    with pytest.raises(FileNotFoundError, match="preprocessing"):
        build_index(tiny_config(tmp_path, tiny_backbone))


def scientific_catalog(datasets_dir: Path, every: int) -> list[dict]:
    """amazon-scientific items (text = title. categories. brand, used as is).

    ``every > 1`` keeps every n-th item plus every caliper / glove item, so a small, fast
    catalog still holds both test topics among hundreds of unrelated distractors.
    """
    frame = pd.read_csv(datasets_dir / "amazon-scientific" / "Scientific.text", sep="\t", quoting=3, dtype=str)
    frame.columns = ["item_id", "text"]
    frame = frame.dropna()
    topical = frame["text"].str.lower().str.contains("caliper|glove")
    frame = frame[(np.arange(len(frame)) % every == 0) | topical]
    return [
        {"item_id": r.item_id, "scene": "amazon-scientific", "title": r.text.split(". ")[0], "text": r.text.strip()}
        for r in frame.itertuples()
    ]


@pytest.mark.parametrize("every", [12, pytest.param(1, marks=pytest.mark.slow)], ids=["subset", "full"])
def test_minilm_index_retrieves_by_topic(ray_session, datasets_dir, minilm_encoder, tmp_path, every):
    rows = scientific_catalog(datasets_dir, every)
    cfg = tiny_config(tmp_path, "minilm", scene="amazon-scientific")
    cfg.index.batch_size = 128
    write_items(cfg.data.processed_dir, rows, files=3)
    index = ItemIndex.load(build_index(cfg))
    assert len(index) == len(rows)

    for query, words in [("digital caliper for measuring", ("caliper", "measur")), ("nitrile gloves", ("glove",))]:
        relevant = sum(any(w in r["text"].lower() for w in words) for r in rows)
        hits = index.search(minilm_encoder.encode_users([query]), k=10)[0]
        texts = [index.get(item_id)["text"].lower() for item_id, _ in hits]
        on_topic = sum(any(w in t for w in words) for t in texts)
        # At random about 10 * relevant / len(rows) (about 1-2) would be on topic.
        assert on_topic >= 6, f"{query!r} ({relevant} relevant of {len(rows)}): top 10 = {[t[:60] for t in texts]}"
