"""The serving graph on the Redis store: a catalog change and a user's events survive an app restart.

Skipped, with the reason, when no Redis server answers (.ci/run installs and starts one). Uses
database 15 and a per-run key prefix, deleted afterwards. Marked slow (two app deployments, about
a minute on 2 cores); the Redis store itself runs in the default suite (tests/test_store.py).
"""

from __future__ import annotations

import uuid

import pytest
from test_serve import free_port, tiny_index
from test_store import REDIS_URL, redis_reachable

from coldrec.serve.app import AppArgs, build_app

APP = "coldrec-redis-test"


@pytest.mark.slow
def test_redis_backed_app_keeps_state_across_a_restart(ray_session, tiny_backbone, tmp_path):
    import httpx
    from ray import serve

    from coldrec.store import open_store

    reason = redis_reachable()
    if reason:
        pytest.skip(reason)
    store = f"{REDIS_URL}?prefix=coldrec-serve-test-{uuid.uuid4().hex[:8]}:"
    args = AppArgs(index_dir=str(tiny_index(tmp_path, tiny_backbone)), candidates=8, num_cpus_per_replica=0.25,
                   store=store)  # fmt: skip
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(args), name=APP, route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            assert http.post("/items", json={"item_id": "r1", "title": "Cobalt kite"}).status_code == 201
            assert http.post("/events", json={"user_id": "ru", "item_id": "r1", "kind": "click"}).status_code == 201
            assert http.delete("/items/i0").status_code == 200
            serve.delete(APP)
            serve.run(build_app(args), name=APP, route_prefix="/")
            reply = http.post("/recommend", json={"text": "Cobalt kite", "k": 20})
            ids = [i["item_id"] for i in reply.json()["items"]]
            assert ids[0] == "r1" and "i0" not in ids
            assert [i["item_id"] for i in http.get("/users/ru/profile").json()["recent_items"]] == ["r1"]
            assert http.get("/readyz").json()["catalog_seq"] == 2
    finally:
        serve.delete(APP)
        serve.shutdown()
        open_store(store).clear()
