"""Both state-store backends pass the same tests: SQLite always, Redis when a server answers.

Redis tests use database 15 and a per-test key prefix, and delete their keys afterwards;
``COLDREC_TEST_REDIS`` points them at another server (default redis://127.0.0.1:6379/15).
"""

from __future__ import annotations

import multiprocessing
import os
import uuid

import numpy as np
import pytest

from coldrec.store import Store, open_store
from coldrec.store.redis_store import split_prefix

REDIS_URL = os.environ.get("COLDREC_TEST_REDIS", "redis://127.0.0.1:6379/15")


def redis_reachable() -> str | None:
    """None when a Redis server answers at REDIS_URL, else why not."""
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return None
    except Exception as err:  # no client library, refused, timeout: all mean "skip"
        return f"no Redis server at {REDIS_URL} ({type(err).__name__}: {err}); .ci/run installs and starts one"


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(str(tmp_path / "state" / "coldrec.sqlite"))
        yield s
        s.close()
        return
    reason = redis_reachable()
    if reason:
        pytest.skip(reason)
    s = open_store(f"{REDIS_URL}?prefix=coldrec-test-{uuid.uuid4().hex[:8]}:")
    yield s
    s.clear()
    s.close()


def test_is_a_store(store):
    assert isinstance(store, Store)


def test_history_is_newest_first_and_per_user(store):
    store.append_event("u1", "a", "click", ts=100.0)
    store.append_event("u1", "b", "purchase", ts=300.0)
    store.append_event("u1", "c", "rating", ts=200.0, rating=4.5)
    store.append_event("u1", "d", "click", ts=300.0)  # same ts as b, arrived later: newer
    store.append_event("u2", "z", "click")
    assert [e.item_id for e in store.history("u1")] == ["d", "b", "c", "a"]
    assert [e.item_id for e in store.history("u1", limit=2)] == ["d", "b"]
    rated = store.history("u1")[2]
    assert (rated.kind, rated.rating, rated.ts) == ("rating", 4.5, 200.0)
    assert [e.item_id for e in store.history("u2")] == ["z"] and store.history("u2")[0].ts > 1e9
    assert store.has_user("u1") and not store.has_user("nobody")
    assert store.history("nobody") == []


@pytest.mark.parametrize(
    "args, message",
    [(("", "a", "click"), "user_id"), (("u", " ", "click"), "item_id"), (("u", "a", "view"), "kind"),
     (("u", "a", "rating"), "rating"), (("u", "a", "click", None, 3.0), "rating")],
)  # fmt: skip
def test_bad_events_are_refused(store, args, message):
    with pytest.raises(ValueError, match=message):
        store.append_event(*args)
    assert not store.has_user(args[0] or "u")


def test_catalog_change_log(store):
    assert store.last_seq() == 0 and store.catalog_changes() == []
    v1, v2 = np.arange(4, dtype=np.float32), np.ones(4, dtype=np.float32)
    s1 = store.put_item({"item_id": "x", "title": "Drill", "text": "Drill"}, v1, "m1")
    s2 = store.put_item({"item_id": "y", "title": "Tape", "text": "Tape"}, v2, "m1")
    s3 = store.delete_item("x")
    assert s1 < s2 < s3 == store.last_seq()
    changes = store.catalog_changes()
    assert [(c.seq, c.op, c.item_id) for c in changes] == [(s1, "put", "x"), (s2, "put", "y"), (s3, "delete", "x")]
    assert changes[0].row["title"] == "Drill" and changes[0].model_version == "m1"
    np.testing.assert_array_equal(changes[0].vector, v1)
    assert changes[2].vector is None
    assert [c.seq for c in store.catalog_changes(since=s1)] == [s2, s3]
    assert [c.seq for c in store.catalog_changes(since=s1, limit=1)] == [s2]
    assert store.catalog_changes(since=s3) == []
    assert store.catalog_item("x").op == "delete" and store.catalog_item("y").row["title"] == "Tape"
    assert store.catalog_item("nope") is None


def _replay(changes) -> dict:
    """What a Retriever replica builds from a log: each item's last change wins."""
    state: dict = {}
    for c in changes:
        state[c.item_id] = (c.op, c.row.get("title"), None if c.vector is None else c.vector.tolist())
    return state


def test_compaction_keeps_each_items_latest_change(store):
    vector = np.ones(2, dtype=np.float32)
    for n in range(3):
        store.put_item({"item_id": "a", "title": f"A{n}"}, vector * n, "m1")
    store.put_item({"item_id": "b", "title": "B"}, vector, "m1")
    store.delete_item("c")  # an item of the saved index: its delete must survive
    store.put_item({"item_id": "d", "title": "D"}, vector, "m1")
    store.delete_item("d")
    seen_by_replica = store.last_seq() - 2  # a replica that has not read the last two changes yet
    before, pending = _replay(store.catalog_changes()), _replay(store.catalog_changes(since=seen_by_replica))
    last = store.last_seq()

    assert store.compact_catalog() == 3
    after = store.catalog_changes()
    assert [(c.op, c.item_id) for c in after] == [("put", "a"), ("put", "b"), ("delete", "c"), ("delete", "d")]
    assert _replay(after) == before and after[0].row["title"] == "A2" and after[0].model_version == "m1"
    assert _replay(store.catalog_changes(since=seen_by_replica)) == pending
    assert store.last_seq() == last and store.catalog_item("a").row["title"] == "A2"
    assert store.compact_catalog() == 0
    assert store.put_item({"item_id": "e"}, vector, "m1") == last + 1  # seqs are never reused


def test_ingress_compacts_every_n_writes(store):
    from coldrec.serve.ingress import compact_if_due

    for n in range(4):
        store.put_item({"item_id": "a", "title": f"A{n}"}, np.ones(2, dtype=np.float32), "m1")
    assert compact_if_due(store, writes=3, every=2) is None and len(store.catalog_changes()) == 4
    assert compact_if_due(store, writes=4, every=0) is None
    assert compact_if_due(store, writes=4, every=2) == 3 and len(store.catalog_changes()) == 1


def _writer(location: str, worker: int, n: int) -> None:
    s = open_store(location)
    for i in range(n):
        s.append_event(f"w{worker}", f"i{i}", "click", ts=float(i))
        s.put_item({"item_id": f"w{worker}-{i}"}, np.zeros(2, dtype=np.float32), "m")
    s.close()


def test_several_processes_share_one_store(store):
    location = str(store.path) if hasattr(store, "path") else f"{store.url}?prefix={store.prefix}"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(location, w, 20)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    seqs = [c.seq for c in store.catalog_changes()]
    assert len(seqs) == 60 and seqs == sorted(set(seqs))
    assert all(len(store.history(f"w{w}", limit=100)) == 20 for w in range(3))


def test_state_survives_reopening(tmp_path):
    path = str(tmp_path / "s.sqlite")
    s = open_store(path)
    s.append_event("u", "a", "click")
    s.put_item({"item_id": "a"}, np.ones(3, dtype=np.float32), "m")
    s.close()
    again = open_store(f"sqlite://{path}")
    assert [e.item_id for e in again.history("u")] == ["a"] and again.last_seq() == 1
    again.close()


def test_redis_url_prefix_is_split_off():
    assert split_prefix("redis://h:1/2?prefix=x:&ssl_cert_reqs=none") == ("redis://h:1/2?ssl_cert_reqs=none", "x:")
    assert split_prefix("redis://h:1/2") == ("redis://h:1/2", "coldrec:")


def test_compact_command(tmp_path, capsys):
    from coldrec.cli import main

    path = tmp_path / "state.sqlite"
    store = open_store(str(path))
    for n in range(3):
        store.put_item({"item_id": "a", "text": f"v{n}"}, np.zeros(4, np.float32), "m")
    assert main(["compact", "--store", str(path)]) == 0
    assert "2 superseded" in capsys.readouterr().out
    assert [c.row["text"] for c in open_store(str(path)).catalog_changes(since=0)] == ["v2"]
