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
    assert np.array_equal(index.vectors(["i4", "i0", "i4"]), np.stack([index.vector(i) for i in ("i4", "i0", "i4")]))
    assert index.vectors([]).shape == (0, index.dim)
    with pytest.raises(KeyError):
        index.vectors(["i4", "i3"])
    with pytest.raises(ValueError, match="dim"):
        index.search(np.zeros((1, 5), dtype=np.float32), k=1)

    reloaded = ItemIndex.load(index.save(tmp_path / "copy"))
    assert len(reloaded) == len(index) and reloaded.get("i3") is None
    assert json.loads((tmp_path / "copy" / "meta.json").read_text())["count"] == len(index)


def test_build_index_reports_missing_catalog(tmp_path, tiny_backbone):
    with pytest.raises(FileNotFoundError, match="preprocessing"):
        build_index(tiny_config(tmp_path, tiny_backbone))


def test_build_index_refuses_a_catalog_rendered_with_another_template(tmp_path, tiny_backbone):
    cfg = tiny_config(tmp_path, tiny_backbone)
    small_catalog(cfg.data.processed_dir)
    (cfg.data.processed_dir / "stats.json").write_text(json.dumps({"text": {"fields": ["title"]}}))
    with pytest.raises(ValueError, match="fields differ"):
        build_index(cfg)  # the model's default template reads every field; serving would render new items so


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


# ---- automatic index choice, IVF tuning, filtered IVF search, devices (synthetic vectors, no Ray) ----

from coldrec.config import IndexConfig  # noqa: E402
from coldrec.index.factory import choose_factory, ivf_nlist  # noqa: E402
from coldrec.index.gpu import gpu_available  # noqa: E402


def clustered(n: int, dim: int = 32, centres: int = 40, seed: int = 0) -> np.ndarray:
    """(n, dim) unit vectors around a few random centres: neighbourhoods that IVF can exploit."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((centres, dim))[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_rows(n: int) -> pd.DataFrame:
    # the last 5 items form a scene of their own, scattered over the whole catalog
    return pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "scene": ["a"] * (n - 5) + ["b"] * 5})


@pytest.fixture(scope="module")
def ivf_built(tmp_path_factory):
    vectors = clustered(4200)[:4000]  # the other 200 are the held-out queries of held_out()
    index = ItemIndex.build(synthetic_rows(4000), vectors, config=IndexConfig(exact_max_items=500))
    return index.save(tmp_path_factory.mktemp("ivf") / "v1"), vectors


def held_out() -> np.ndarray:
    """(200, 32) queries from the catalog's own mixture that are not in the catalog."""
    return clustered(4200)[4000:]


def test_auto_factory_choice():
    assert choose_factory("auto", 500, exact_max_items=500) == "Flat"
    assert choose_factory("auto", 1_000_000, exact_max_items=500) == "IVF4000,Flat"
    assert choose_factory("HNSW32", 10, exact_max_items=500) == "HNSW32"
    assert ivf_nlist(100) == 16 and ivf_nlist(10**12) == 65536
    assert ivf_nlist(4000) == 4000 // 39  # every list keeps enough training points
    small = ItemIndex.build(synthetic_rows(50), clustered(50))
    assert small.meta["factory"] == "Flat" and "search_params" not in small.meta
    assert ItemIndex.create(8, "auto").meta["factory"] == "Flat"


def test_auto_builds_tuned_ivf_and_load_applies_nprobe(ivf_built):
    path, vectors = ivf_built
    meta = json.loads((path / "meta.json").read_text())
    assert meta["factory"] == "IVF102,Flat" and meta["factory_requested"] == "auto"
    assert meta["tuning"]["recall_low"] >= 0.95 and meta["tuning"]["queries"] == 1000
    nprobe = meta["search_params"]["nprobe"]
    assert 1 <= nprobe < 102
    index = ItemIndex.load(path)
    assert index._ivf.nprobe == nprobe and index.device == "cpu"
    queries = held_out()
    exact = ItemIndex.build(synthetic_rows(4000), vectors, factory="Flat")
    found = index.search(queries, k=10)
    truth = exact.search(queries, k=10)
    recall = np.mean([len({i for i, _ in a} & {i for i, _ in b}) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9


def test_ivf_writes_and_filtered_search_widen_past_probed_lists(ivf_built):
    path, vectors = ivf_built
    index = ItemIndex.load(path)
    index.use_device("cpu")
    # scene "b" holds 5 items in lists the query's nprobe never reaches: widening probes more lists
    hits = index.search(vectors[0], k=10, scene="b")[0]
    assert sorted(i for i, _ in hits) == [f"i{n}" for n in range(3995, 4000)]
    assert index.search(vectors[0], k=3, where=lambda row: row["item_id"] == "i3000")[0][0][0] == "i3000"
    assert index.search(vectors[0], k=3, scene="nowhere") == [[]]

    assert index.remove(["i0", "i1", "unknown"]) == 2 and len(index) == 3998
    assert all(i not in ("i0", "i1") for i, _ in index.search(vectors[:2], k=20)[0])
    with pytest.raises(KeyError):
        index.vector("i0")
    index.upsert([{"item_id": "i0", "scene": "b"}], vectors[5:6])
    assert np.allclose(index.vector("i0"), vectors[5]) and len(index) == 3999
    assert np.array_equal(index.vectors(["i0", "i2"]), np.stack([index.vector("i0"), index.vector("i2")]))  # the hash map
    assert index.search(vectors[5], k=1, scene="b")[0][0] == ("i0", pytest.approx(1.0, abs=1e-4))
    reloaded = ItemIndex.load(index.save(path.parent / "v2"))
    assert len(reloaded) == 3999 and reloaded._ivf.nprobe == index._ivf.nprobe


def test_hnsw_is_selectable_but_cannot_remove():
    vectors = clustered(600)
    index = ItemIndex.build(synthetic_rows(600), vectors, factory="HNSW32", config=IndexConfig(tune_queries=100))
    assert "efSearch" in index.meta["search_params"]
    assert index.search(vectors[7], k=1)[0][0][0] == "i7"
    with pytest.raises(NotImplementedError, match="cannot remove"):
        index.remove(["i7"])


def test_device_choice_without_gpu(ivf_built):
    index = ItemIndex.load(ivf_built[0], device="auto")
    assert index.device == ("gpu" if gpu_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        index.use_device("tpu")
    if not gpu_available():
        with pytest.raises(RuntimeError, match="no GPU"):
            index.use_device("gpu")


@pytest.mark.gpu
@pytest.mark.parametrize("factory", ["Flat", "auto"])
def test_gpu_search_matches_cpu_and_follows_writes(ivf_built, factory):
    if not gpu_available():
        pytest.skip("faiss was installed without GPU support (pip install '.[gpu]')")
    vectors = ivf_built[1]
    cpu = ItemIndex.build(synthetic_rows(4000), vectors, factory=factory, config=IndexConfig(exact_max_items=500))
    gpu = ItemIndex.build(synthetic_rows(4000), vectors, factory=factory, config=IndexConfig(exact_max_items=500))
    assert gpu.use_device("gpu") == "gpu"
    queries = held_out()
    same = [len({i for i, _ in a} & {i for i, _ in b}) for a, b in zip(cpu.search(queries, 10), gpu.search(queries, 10))]
    assert np.mean(same) >= 9.5  # float rounding may swap near ties
    assert gpu.remove(["i0"]) == 1 and all(i != "i0" for i, _ in gpu.search(vectors[0], k=5)[0])
    gpu.upsert([{"item_id": "new", "scene": "a"}], -vectors[0:1])
    assert gpu.search(-vectors[0], k=1)[0][0][0] == "new"
    assert gpu.search(vectors[0], k=5, scene="b")[0]  # widening beyond the GPU's k runs on the CPU
