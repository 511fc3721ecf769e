"""The stateful API over real HTTP: live catalog across two Retriever replicas, user events and
profiles, similar items, filters, reasons, bad requests, and state surviving an app restart.

One app per module (tiny backbone, SQLite store in a temp folder). The tiny backbone's vectors are
random, but a query whose text equals an item's text gets that item's own vector (both towers share
the backbone), so "find the new item" is exact even so.
"""

from __future__ import annotations

import asyncio

import pytest
from test_serve import TITLES, assert_error_shape, free_port, tiny_index

from coldrec.serve.app import AppArgs, build_app

APP = "coldrec-state-test"
LIMITS = {"max_k": 20, "max_text_chars": 200, "max_item_ids": 5}


@pytest.fixture(scope="module")
def deployed(ray_session, tiny_backbone, tmp_path_factory):
    import httpx
    from ray import serve

    index_dir = tiny_index(tmp_path_factory.mktemp("state-index"), tiny_backbone)
    store = str(tmp_path_factory.mktemp("state-store") / "coldrec.sqlite")
    args = AppArgs(index_dir=str(index_dir), candidates=8, num_cpus_per_replica=0.25, store=store,
                   num_retriever_replicas=2, **LIMITS)  # fmt: skip
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args), name=APP, route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        yield http, args
    serve.delete(APP)
    serve.shutdown()


@pytest.fixture
def client(deployed):
    return deployed[0]


def add(client, item_id: str, **fields) -> int:
    reply = client.post("/items", json={"item_id": item_id, **fields})
    assert reply.status_code == 201, reply.text
    assert reply.json()["op"] == "put"
    return reply.json()["seq"]


def top_ids(client, body: dict) -> list[str]:
    reply = client.post("/recommend", json=body)
    assert reply.status_code == 200, reply.text
    return [i["item_id"] for i in reply.json()["items"]]


def retriever_infos(calls: int = 40) -> list[dict]:
    """``info`` from many concurrent calls, so both Retriever replicas answer some."""
    from ray import serve

    handle = serve.get_deployment_handle("Retriever", APP)

    async def gather():
        return await asyncio.gather(*[handle.info.remote() for _ in range(calls)])

    return asyncio.run(gather())


def test_readyz(client):
    reply = client.get("/readyz")
    assert reply.status_code == 200, reply.text
    assert reply.json()["ready"] is True and reply.json()["items"] >= len(TITLES)


def test_new_item_is_found_by_the_next_request_on_every_replica(client):
    seq = add(client, "new-1", title="Zephyr quantum toaster")
    for _ in range(6):  # requests spread over both Retriever replicas
        reply = client.post("/recommend", json={"text": "Zephyr quantum toaster", "k": 3})
        assert reply.json()["items"][0]["item_id"] == "new-1"
        assert "zephyr" in reply.json()["items"][0]["reason"]
    infos = retriever_infos()
    assert len({i["replica"] for i in infos}) == 2, "both Retriever replicas should have answered"
    assert all(i["catalog_seq"] >= seq for i in infos)
    assert client.get("/healthz").json()["items"] >= len(TITLES) + 1


def test_put_replaces_and_delete_removes_for_good(client):
    add(client, "gone-1", title="Obsidian lava lamp")
    assert top_ids(client, {"text": "Obsidian lava lamp", "k": 1}) == ["gone-1"]
    reply = client.put("/items/gone-1", json={"title": "Marble chess set", "brand": "Acme"})
    assert reply.status_code == 200 and reply.json()["op"] == "put"
    assert top_ids(client, {"text": "Marble chess set. Acme", "k": 1}) == ["gone-1"]
    reply = client.delete("/items/gone-1")
    assert reply.status_code == 200 and reply.json()["op"] == "delete"
    for _ in range(6):
        assert "gone-1" not in top_ids(client, {"text": "Marble chess set. Acme", "k": 20})
    assert client.get("/items/gone-1/similar").status_code == 404
    assert client.post("/recommend", json={"item_ids": ["gone-1"]}).status_code == 404
    assert client.delete("/items/gone-1").status_code == 404
    add(client, "gone-1", title="Obsidian lava lamp")  # an id can come back after a delete


def test_base_index_items_can_be_deleted_too(client):
    assert client.delete("/items/i11").status_code == 200
    assert "i11" not in top_ids(client, {"text": f"{TITLES[11]}. Industrial", "k": 20})
    assert all("i11" != i["item_id"] for i in client.get("/items/i10/similar?k=20").json()["items"])


def test_events_shape_the_users_recommendations_and_profile(client):
    add(client, "lab-1", title="Fume hood sash", categories="Lab Safety | Ventilation", brand="Labco")
    add(client, "lab-2", title="Eyewash station", categories="Lab Safety", brand="Labco")
    events = [("i0", "click", None, 100.0), ("lab-1", "purchase", None, 200.0), ("lab-2", "rating", 4.5, 300.0)]
    for item_id, kind, rating, ts in events:
        reply = client.post("/events", json={"user_id": "u1", "item_id": item_id, "kind": kind, "rating": rating, "ts": ts})
        assert reply.status_code == 201, reply.text
    reply = client.post("/recommend", json={"user_id": "u1", "k": 5})
    assert reply.status_code == 200, reply.text
    items = reply.json()["items"]
    assert len(items) == 5 and not {"i0", "lab-1", "lab-2"} & {i["item_id"] for i in items}
    assert all(i["reason"].startswith("like '") for i in items)
    seen = top_ids(client, {"user_id": "u1", "k": 20, "exclude_seen": False})
    assert {"i0", "lab-1", "lab-2"} <= set(seen)

    profile = client.get("/users/u1/profile").json()
    assert [i["item_id"] for i in profile["recent_items"]] == ["lab-2", "lab-1", "i0"]
    assert profile["recent_items"][0]["rating"] == 4.5 and profile["events"] == 3
    assert profile["top_categories"][0] == {"name": "Lab Safety", "count": 2}
    assert profile["top_brands"] == [{"name": "Labco", "count": 2}]
    assert profile["profile_text"].startswith("Eyewash station")
    assert "labco" in profile["key_words"] and "the" not in profile["key_words"]

    # a new event counts at once: the next request excludes it
    client.post("/events", json={"user_id": "u1", "item_id": "i5", "kind": "click", "ts": 400.0})
    assert "i5" not in top_ids(client, {"user_id": "u1", "k": 20})
    assert client.get("/users/u1/profile").json()["recent_items"][0]["item_id"] == "i5"


def test_category_and_scene_filters(client):
    add(client, "lab-3", title="Spill kit", categories="lab safety", scene="lab")
    ids = top_ids(client, {"text": "safety", "k": 20, "category": "LAB SAFETY"})
    assert ids and set(ids) <= {"lab-1", "lab-2", "lab-3"}
    assert top_ids(client, {"text": "safety", "k": 20, "category": "lab safety", "scene": "lab"}) == ["lab-3"]
    assert top_ids(client, {"text": "safety", "k": 5, "category": "no such category"}) == []


def test_similar_items(client):
    reply = client.get("/items/i1/similar", params={"k": 3})
    assert reply.status_code == 200, reply.text
    items = reply.json()["items"]
    assert len(items) == 3 and "i1" not in {i["item_id"] for i in items}
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    add(client, "twin-1", title="Nitrile gloves", description="Industrial")  # same text as i1: a cold twin
    assert client.get("/items/twin-1/similar", params={"k": 1}).json()["items"][0]["item_id"] == "i1"


def test_changes_from_another_model_version_are_re_encoded(deployed):
    import numpy as np

    from coldrec.store import open_store

    client, args = deployed
    store = open_store(args.store)  # as a writer serving an older model would have left it
    row = {"item_id": "old-1", "scene": "shop", "title": "Velvet hammock", "text": "Velvet hammock"}
    store.put_item(row, np.ones(3, dtype=np.float32), "an-older-model")
    store.close()
    assert top_ids(client, {"text": "Velvet hammock", "k": 1}) == ["old-1"]


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        ("post", "/items", {"title": "no id"}, 422, "item_id"),
        ("post", "/items", {"item_id": "x1"}, 422, "at least one of title"),
        ("post", "/items", {"item_id": "x1", "title": "  "}, 422, "at least one of title"),
        ("post", "/items", {"item_id": "a/b", "title": "t"}, 422, "'/'"),
        ("post", "/items", {"item_id": "x1", "title": 5}, 422, "valid string"),
        ("post", "/items", {"item_id": "x1", "title": "t", "price": 3}, 422, "Extra inputs"),
        ("post", "/items", {"item_id": "i1", "title": "t"}, 409, "exists"),
        ("put", "/items/nope", {"title": "t"}, 404, "unknown item"),
        ("put", "/items/i1", {"item_id": "i1", "title": "t"}, 422, "Extra inputs"),
        ("delete", "/items/nope", None, 404, "unknown item"),
        ("post", "/events", {"user_id": "u", "item_id": "nope", "kind": "click"}, 404, "unknown item"),
        ("post", "/events", {"user_id": "u", "item_id": "i1", "kind": "view"}, 422, "click"),
        ("post", "/events", {"user_id": "u", "item_id": "i1", "kind": "rating"}, 422, "rating"),
        ("post", "/events", {"user_id": "u", "item_id": "i1", "kind": "click", "rating": 3}, 422, "rating"),
        ("post", "/events", {"user_id": " ", "item_id": "i1", "kind": "click"}, 422, "whitespace"),
        ("post", "/events", {"user_id": "u", "item_id": "i1", "kind": "click", "ts": -1}, 422, "greater than"),
        ("post", "/events", {"user_id": "u", "item_id": "i1", "kind": "rating", "rating": 99}, 422, "less than"),
        ("post", "/recommend", {"user_id": "nobody"}, 404, "unknown user"),
        ("post", "/recommend", {"user_id": ""}, 422, "at least 1 character"),
        ("post", "/recommend", {"text": "a", "category": " "}, 422, "whitespace"),
        ("get", "/users/nobody/profile", None, 404, "unknown user"),
        ("get", "/items/nope/similar", None, 404, "unknown item"),
        ("get", "/items/i1/similar?k=0", None, 422, "greater than or equal to 1"),
        ("get", "/items/i1/similar?k=21", None, 422, "max_k=20"),
        ("get", "/items/i1/similar?k=ten", None, 422, "valid integer"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(client, method, path, body, status, message):
    reply = client.request(method.upper(), path, json=body)
    assert reply.status_code == status, reply.text
    assert message in reply.text
    assert_error_shape(reply)


def test_restart_keeps_catalog_changes_and_events(deployed):
    from ray import serve

    client, args = deployed
    add(client, "kept-1", title="Saffron pepper grinder")
    client.post("/events", json={"user_id": "u-restart", "item_id": "kept-1", "kind": "purchase"})
    client.delete("/items/i10")
    serve.delete(APP)
    serve.run(build_app(args), name=APP, route_prefix="/")
    assert top_ids(client, {"text": "Saffron pepper grinder", "k": 1}) == ["kept-1"]
    assert "i10" not in top_ids(client, {"text": f"{TITLES[10]}. Industrial", "k": 20})
    profile = client.get("/users/u-restart/profile").json()
    assert [i["item_id"] for i in profile["recent_items"]] == ["kept-1"]
    assert client.post("/recommend", json={"user_id": "u-restart", "k": 3}).status_code == 200


def test_metrics_middleware_labels_route_templates_and_statuses(monkeypatch):
    from fastapi import FastAPI, HTTPException
    from fastapi.testclient import TestClient

    from coldrec.serve import metrics

    seen: list[tuple[str, dict]] = []

    class Recorder:
        def __init__(self, name: str):
            self.name = name

        def inc(self, tags: dict) -> None:
            seen.append((self.name, tags))

        def observe(self, value: float, tags: dict) -> None:
            assert value >= 0
            seen.append((self.name, tags))

    monkeypatch.setattr(metrics, "http_metrics", lambda: tuple(map(Recorder, ("requests", "errors", "latency"))))
    api = FastAPI()
    metrics.install_metrics(api)

    @api.get("/items/{item_id}")
    async def item(item_id: str) -> dict:
        if item_id == "missing":
            raise HTTPException(404)
        if item_id == "bug":
            raise RuntimeError("no handler turns this into a response")
        return {"item_id": item_id}

    client = TestClient(api, raise_server_exceptions=False)
    assert [client.get(path).status_code for path in ("/items/a", "/items/missing", "/items/bug", "/nowhere")] == [
        200, 404, 500, 404]  # fmt: skip
    template = "/items/{item_id}"
    assert [(tags["route"], tags["method"], tags["status"]) for name, tags in seen if name == "requests"] == [
        (template, "GET", "200"), (template, "GET", "404"), (template, "GET", "500"), ("unmatched", "GET", "404")]
    assert [tags["status"] for name, tags in seen if name == "errors"] == ["404", "500", "404"]
    assert [tags for name, tags in seen if name == "latency"][0] == {"route": template, "method": "GET"}


def test_metric_objects_record_in_a_ray_worker(ray_session):
    import ray

    @ray.remote(num_cpus=0)
    def record() -> bool:
        from coldrec.serve.metrics import batch_histogram, batch_recorder, catalog_gauges, http_metrics

        requests, errors, latency = http_metrics()
        tags = {"route": "/recommend", "method": "POST", "status": "200"}
        requests.inc(tags=tags)
        errors.inc(tags={**tags, "status": "422"})
        latency.observe(12.5, tags={"route": "/recommend", "method": "POST"})
        for gauge in catalog_gauges():
            gauge.set(3, tags={"model_version": "v"})
        batch_histogram().observe(4, tags={"stage": "recommend"})
        batch_recorder("lookup")(2)
        return True

    assert ray.get(record.remote())
