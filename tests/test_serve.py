"""The Serve graph over real HTTP (tiny backbone), its bad-request answers, and the Serve config files."""

from __future__ import annotations

import inspect
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from coldrec.index.item_index import ItemIndex, write_latest
from coldrec.serve.app import AppArgs, build_app
from coldrec.serve.candidates import CandidateList
from coldrec.serve.coalesce import Coalescer
from coldrec.serve.reranker import mmr_rerank

ROOT = Path(__file__).resolve().parents[1]
LIMITS = {"max_k": 20, "max_text_chars": 200, "max_item_ids": 5}
TITLES = [
    "Digital caliper", "Nitrile gloves", "Safety goggles", "Glass beaker", "Cordless drill", "Sanding roll",
    "Micrometer", "Pipette tips", "Multimeter", "Hex bolts", "Thermometer gun", "Packing tape",
]  # fmt: skip


def assert_error_shape(reply) -> None:
    """422: FastAPI's validation shape, a list of {loc, msg, type}; any other error: a message or an object."""
    detail = reply.json()["detail"]
    if reply.status_code == 422:
        assert isinstance(detail, list) and detail, reply.text
        assert all(set(e) == {"loc", "msg", "type"} and isinstance(e["loc"], list) for e in detail), reply.text
    else:
        assert isinstance(detail, (str, dict)), reply.text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_index(folder: Path, backbone: str) -> Path:
    """A saved index (two scenes) embedded in-process: the Ray Data build has its own tests."""
    from coldrec.model.encoder import TextEncoder

    encoder = TextEncoder.load(backbone, device="cpu")
    rows = [
        {"item_id": f"i{n}", "scene": "lab" if n % 2 else "shop", "title": t, "text": f"{t}. Industrial"}
        for n, t in enumerate(TITLES)
    ]
    meta = {"model_path": backbone, "model_version": encoder.version, "scene": "shop",
            "settings": encoder.settings.model_dump()}  # fmt: skip
    index = ItemIndex.build(rows, encoder.encode_items([r["text"] for r in rows]), "Flat", meta)
    version_dir = index.save(folder / "shop" / "untrained-tiny")
    write_latest(version_dir)
    return version_dir.parent


def save_beaker_reranker(folder: Path) -> None:
    """Signals where everyone who took the beaker (i3) also took pipette tips (i7), weighted heavily;
    for free text alone, the words' overlap with an item's text, weighted heavily too."""
    import pandas as pd

    from coldrec.rank.fusion import FusionWeights, save_reranker
    from coldrec.rank.lexical import LexicalVectors
    from coldrec.rank.signals import BehaviourSignals

    train = pd.DataFrame([{"user_id": f"u{n}", "history": ["i3", f"i{n % 3}"], "target": "i7"} for n in range(6)])
    signals = BehaviourSignals.fit(train, [f"i{n}" for n in range(len(TITLES))])
    vocabulary = LexicalVectors.fit([f"{t}. Industrial" for t in TITLES])
    save_reranker(folder, signals, FusionWeights(behaviour=5.0), {"on": "test"}, vocabulary,
                  text_weights=FusionWeights(query_words=5.0), text_report={"on": "test"})


@pytest.fixture(scope="module")
def client(ray_session, tiny_backbone, tmp_path_factory):
    import httpx
    from ray import serve

    index_dir = tiny_index(tmp_path_factory.mktemp("serve-index"), tiny_backbone)
    save_beaker_reranker(index_dir / "untrained-tiny" / "rerank")  # build_app finds it beside the index
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    store = str(tmp_path_factory.mktemp("serve-state") / "state.sqlite")
    args = AppArgs(index_dir=str(index_dir), candidates=8, num_cpus_per_replica=0.25, store=store, **LIMITS)
    serve.run(build_app(args), name="coldrec-test", route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        yield http
    serve.delete("coldrec-test")
    serve.shutdown()


def test_healthz(client):
    reply = client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "items": len(TITLES), "model_version": "untrained"}


@pytest.mark.parametrize(
    "body",
    [{"text": "a caliper to measure parts", "k": 4}, {"item_ids": ["i3", "i0"], "k": 4},
     {"text": "gloves", "item_ids": ["i1"], "k": 4}, {"text": "tools", "k": 4, "scene": "lab"}],
    ids=["text", "item_ids", "both", "scene"],
)  # fmt: skip
def test_recommend(client, body):
    reply = client.post("/recommend", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["model_version"] == "untrained"
    items = data["items"]
    assert len(items) == 4 and all(set(i) == {"item_id", "title", "score", "reason"} for i in items)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert not set(body.get("item_ids", [])) & {i["item_id"] for i in items}  # clicked items never come back
    if body.get("scene") == "lab":
        assert all(int(i["item_id"][1:]) % 2 == 1 for i in items)
    assert all(i["title"] in TITLES for i in items)


def test_learned_reranker_lifts_what_others_took_with_a_clicked_item(client):
    # k=11 makes every other item a candidate, whatever the untrained tiny model's content scores are.
    reply = client.post("/recommend", json={"item_ids": ["i3"], "k": 11})
    assert reply.status_code == 200, reply.text
    top = reply.json()["items"][0]
    assert top["item_id"] == "i7" and top["reason"] == "often chosen with 'Glass beaker'"


def test_free_text_alone_is_reranked_with_the_weights_learned_for_it(client):
    # The text weights add 5 x the words' overlap with each item's text to its content cosine (at
    # most 1): the item the text names wins, whatever the untrained tiny model's cosines are.
    reply = client.post("/recommend", json={"text": "a multimeter for the lab", "k": 12})
    assert reply.status_code == 200, reply.text
    top = reply.json()["items"][0]
    assert top["item_id"] == "i8" and top["score"] > 1.0 and top["reason"] == "matches 'multimeter'"


def test_recommend_concurrent_requests_batch(client):
    replies: list = []

    def call(n):
        replies.append(client.post("/recommend", json={"text": f"request {n}", "k": 3}))

    threads = [threading.Thread(target=call, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in replies] == [200] * 6


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({}, 422, "at least one of text, item_ids or user_id"),
        ({"item_ids": []}, 422, "at least one of text, item_ids or user_id"),
        ({"text": "   \n"}, 422, "whitespace"),
        ({"text": "x" * 201}, 413, "limit is 200"),
        ({"item_ids": ["i1", "nope", "gone"]}, 404, "nope"),
        ({"item_ids": ["i1", ""]}, 422, "empty id"),
        ({"item_ids": [f"i{n}" for n in range(6)]}, 422, "limit is 5"),
        ({"text": 5}, 422, "valid string"),
        ({"item_ids": "i1"}, 422, "valid list"),
        ({"text": "a", "k": 0}, 422, "greater than or equal to 1"),
        ({"text": "a", "k": 21}, 422, "max_k=20"),
        ({"text": "a", "k": "ten"}, 422, "valid integer"),
        ({"text": "a", "k": 2.5}, 422, "valid integer"),
        ({"text": "a", "user": "x"}, 422, "Extra inputs"),
        ({"text": "a", "scene": "moon"}, 422, "unknown scene"),
        ({"text": "a", "exclude_seen": 0}, 422, "valid boolean"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(client, body, status, message):
    reply = client.post("/recommend", json=body)
    assert reply.status_code == status, reply.text
    assert message in reply.text
    assert_error_shape(reply)
    if status == 404:
        assert reply.json()["detail"]["item_ids"] == ["nope", "gone"]


def test_malformed_bodies(client):
    reply = client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 422
    assert client.post("/recommend", json=["text"]).status_code == 422
    reply = client.post("/recommend", content=b'{"text": "\xff"}', headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text  # not UTF-8: FastAPI cannot read it as JSON text
    assert_error_shape(reply)
    assert client.get("/recommend").status_code == 405
    assert client.get("/nowhere").status_code == 404


def test_openapi_lists_the_errors_each_route_gives(client):
    """Clients generated from /openapi.json learn every status a route answers, with its body."""
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("post", "/recommend"): {"400", "404", "413", "422", "503"},
        ("get", "/items/{item_id}/similar"): {"404", "422"},
        ("post", "/items"): {"400", "409", "422", "503"},
        ("put", "/items/{item_id}"): {"400", "404", "422", "503"},
        ("delete", "/items/{item_id}"): {"404", "422", "503"},
        ("post", "/events"): {"400", "404", "422", "503"},
        ("get", "/users/{user_id}/profile"): {"404", "422", "503"},
        ("get", "/readyz"): {"503"},
    }
    for (method, path), errors in expected.items():
        responses = paths[path][method]["responses"]
        assert {code for code in responses if code[0] in "45"} == errors, (method, path)
        for code in errors - {"422"}:
            assert responses[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorMessage"}


def test_openapi_states_the_deployments_limits(client):
    spec = client.get("/openapi.json").json()
    body = spec["components"]["schemas"]["RecommendRequest"]["properties"]
    assert body["k"]["maximum"] == LIMITS["max_k"]
    assert {"type": "string", "maxLength": LIMITS["max_text_chars"]} in body["text"]["anyOf"]
    assert any(s.get("maxItems") == LIMITS["max_item_ids"] for s in body["item_ids"]["anyOf"])
    k = next(p for p in spec["paths"]["/items/{item_id}/similar"]["get"]["parameters"] if p["name"] == "k")
    assert k["schema"]["maximum"] == LIMITS["max_k"]


def test_build_app_refuses_a_model_the_index_was_not_built_with(tiny_backbone, tmp_path):
    from coldrec.model.backbone import load_backbone
    from coldrec.model.checkpoint import EncoderSettings, save_checkpoint

    index_dir = tiny_index(tmp_path / "index", tiny_backbone)
    tokenizer, backbone = load_backbone(tiny_backbone)
    checkpoint = save_checkpoint(backbone, tokenizer, EncoderSettings(backbone=tiny_backbone), tmp_path / "ckpt")
    with pytest.raises(ValueError, match="build an index with this model"):
        build_app(AppArgs(index_dir=str(index_dir), model_path=str(checkpoint)))
    with pytest.raises(FileNotFoundError):
        build_app(AppArgs(index_dir=str(tmp_path / "nothing")))


def test_build_app_is_a_serve_builder_typed_with_app_args():
    # Serve converts the YAML's ``args`` only when the annotation is the class itself, not a string.
    assert inspect.signature(build_app).parameters["args"].annotation is AppArgs


@pytest.mark.parametrize("name", ["local.yaml", "gpu.yaml", "gpu-single-node.yaml"])
def test_serve_configs_parse(name):
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "serve_configs" / name).read_text()))
    (app,) = config.applications
    assert app.import_path == "coldrec.serve.app:build_app"
    AppArgs.model_validate(app.args)
    assert {d.name for d in app.deployments} == {"Ingress", "ProfileEncoder", "Retriever", "Reranker"}
    encoder = next(d for d in app.deployments if d.name == "ProfileEncoder")
    assert {"max_batch_size", "batch_wait_timeout_s"} <= set(encoder.user_config)
    ingress = next(d for d in app.deployments if d.name == "Ingress")
    Coalescer(None).configure(ingress.user_config)  # the Ingress applies it so in reconfigure
    assert ingress.max_ongoing_requests >= ingress.user_config["max_batch_size"]  # queued requests count as ongoing
    assert ingress.logging_config.enable_access_log is False  # metrics count requests; see the YAML
    if name == "gpu.yaml":
        assert encoder.ray_actor_options.num_gpus > 0
        autoscaled = {d.name for d in app.deployments if d.autoscaling_config}
        assert {"Ingress", "ProfileEncoder", "Retriever"} <= autoscaled


def test_mmr_rerank():
    vec = {"a": [1.0, 0.0], "a2": [0.99, 0.141], "b": [0.0, 1.0]}
    cands = [{"item_id": i, "score": s, "vector": np.array(vec[i])} for i, s in [("a2", 0.9), ("b", 0.8), ("a", 0.9)]]
    assert [c["item_id"] for c in mmr_rerank(cands, 3)] == ["a", "a2", "b"]  # stable: ties by id
    assert [c["item_id"] for c in mmr_rerank(cands, 2, diversity=0.5)] == ["a", "b"]  # near-duplicate a2 drops
    assert mmr_rerank([], 3, diversity=0.5) == []


def test_concurrent_recommends_are_coalesced_and_answered_as_alone(client):
    """A burst of /recommend requests shares its downstream calls, and every request still gets
    the answer (or the 4xx) it gets alone."""
    import concurrent.futures

    from ray import serve

    bodies = [{"text": f"tools for lab work {n}", "k": 4} for n in range(6)]
    bodies += [{"item_ids": [f"i{n}", f"i{n + 2}"], "k": 3, "exclude_seen": n % 2 == 0} for n in range(5)]
    bodies += [{"text": "gloves", "item_ids": ["i1"], "k": 4, "scene": "lab"}, {"text": "beaker", "k": 5, "scene": "shop"}]  # fmt: skip
    bad = [({"item_ids": ["i2", "nope"], "k": 3}, 404), ({"text": "tools", "scene": "moon"}, 422)]
    alone = [client.post("/recommend", json=body) for body in bodies]
    assert all(r.status_code == 200 for r in alone), [r.text for r in alone]

    handles = {name: serve.get_deployment_handle(name, "coldrec-test") for name in ("Ingress", "Retriever", "Reranker")}
    calls = {name: lambda name=name: handles[name].info.remote().result()["calls"] for name in ("Retriever", "Reranker")}
    before = {name: calls[name]() for name in calls}
    # One slot and a long wait make the burst coalesce whatever this machine's timing (the answers
    # never depend on it); a full batch ends the wait early.
    handles["Ingress"].reconfigure.remote({"max_concurrent_batches": 1, "batch_wait_timeout_s": 2.0}).result()
    try:
        requests = [*bodies, *(body for body, _ in bad)]
        with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
            replies = list(pool.map(lambda body: client.post("/recommend", json=body), requests))
    finally:
        handles["Ingress"].reconfigure.remote({"max_concurrent_batches": 2, "batch_wait_timeout_s": 0.0}).result()
    after = {name: calls[name]() for name in calls}

    for body, one, batched in zip(bodies, alone, replies):
        assert batched.status_code == 200, (body, batched.text)
        expected, got = one.json()["items"], batched.json()["items"]
        assert [i["item_id"] for i in got] == [i["item_id"] for i in expected], body
        assert [i["score"] for i in got] == pytest.approx([i["score"] for i in expected], abs=1e-4)
        assert [i["reason"] for i in got] == [i["reason"] for i in expected]
    for (body, status), reply in zip(bad, replies[len(bodies):]):
        assert reply.status_code == status, reply.text

    def grew(name: str, key: str) -> int:
        return after[name].get(key, 0) - before[name].get(key, 0)

    # Every valid request was searched and reranked exactly once, none of them alone.
    assert grew("Retriever", "queries") == grew("Reranker", "lists") == len(bodies)
    assert grew("Retriever", "search") == grew("Reranker", "rerank") == 0
    assert 1 <= grew("Retriever", "search_many") < len(bodies) and 1 <= grew("Reranker", "rerank_many") < len(bodies)
    # The item-id requests (6, counting the one with an unknown id) shared their lookups too.
    assert 1 <= grew("Retriever", "lookup") < 6


def test_search_many_answers_each_query_as_search_does(tiny_backbone, tmp_path):
    import asyncio

    from coldrec.serve.retriever import Retriever

    retriever = Retriever.func_or_class(str(tiny_index(tmp_path, tiny_backbone)))
    vectors = [retriever.index.vector(f"i{n}") for n in range(5)]
    queries = [
        {"k": 4, "exclude": ["i0"], "scene": None, "category": None},
        {"k": 4, "exclude": ["i1", "i3"], "scene": None, "category": None},  # same group as the first
        {"k": 3, "exclude": [], "scene": "lab", "category": None},
        {"k": 2, "exclude": None, "scene": "shop", "category": None},
        {"k": 4, "exclude": [], "scene": None, "category": None},  # its vector failed upstream
    ]
    failed = RuntimeError("encoding failed")

    async def main():
        many = await retriever.search_many([*vectors[:4], failed], queries)
        one = [await retriever.search(v, **q) for v, q in zip(vectors[:4], queries[:4])]
        broken = await retriever.search_many([vectors[0], np.ones(3, dtype=np.float32)], [queries[0], queries[2]])
        return many, one, broken

    many, one, broken = asyncio.run(main())
    assert many[4] is failed and all(isinstance(answer, CandidateList) for answer in many[:4])
    for got, expected in zip(many[:4], one):
        assert [c["item_id"] for c in got] == [c["item_id"] for c in expected]
        assert [c["score"] for c in got] == pytest.approx([c["score"] for c in expected], abs=1e-6)
    assert [len(answer) for answer in many[:4]] == [4, 4, 3, 2]
    assert not {"i1", "i3"} & {c["item_id"] for c in many[1]}
    assert all(int(c["item_id"][1:]) % 2 == 1 for c in many[2]) and all(int(c["item_id"][1:]) % 2 == 0 for c in many[3])
    # A query that fails (a vector of the wrong size) fails alone.
    assert [c["item_id"] for c in broken[0]] == [c["item_id"] for c in one[0]]
    assert isinstance(broken[1], ValueError) and "dim" in str(broken[1])
    assert retriever.calls["search_many"] == 2 and retriever.calls["queries"] == 7


def test_candidate_lists_pickle_their_vectors_as_one_block():
    import pickle

    rng = np.random.default_rng(0)
    cands = CandidateList({"item_id": f"i{n}", "title": "T", "text": "t", "score": 0.5 - n / 10,
                           "vector": rng.normal(size=4).astype(np.float16)} for n in range(3))  # fmt: skip
    buffers: list = []
    back = pickle.loads(pickle.dumps(cands, protocol=5, buffer_callback=buffers.append), buffers=buffers)
    assert len(buffers) == 1  # one block, not a buffer per vector (Ray's serializer pays per buffer)
    assert isinstance(back, CandidateList) and [list(c) for c in back] == [list(c) for c in cands]
    for got, sent in zip(back, cands):
        assert {**got, "vector": None} == {**sent, "vector": None}
        assert got["vector"].dtype == np.float16 and np.array_equal(got["vector"], sent["vector"])
    mixed = CandidateList([dict(cands[0]), {**cands[1], "vector": None}, {"item_id": "x"}])  # pickled as a list
    again = pickle.loads(pickle.dumps(mixed))
    assert isinstance(again, CandidateList) and again[1]["vector"] is None and again[2] == {"item_id": "x"}
    assert pickle.loads(pickle.dumps(CandidateList())) == []


def test_rerank_many_answers_each_list_as_rerank_does():
    from coldrec.serve.reranker import Reranker

    reranker = Reranker.func_or_class(diversity=0.2)
    vec = {"a": [1.0, 0.0], "a2": [0.99, 0.141], "b": [0.0, 1.0]}
    cands = [{"item_id": i, "title": i.upper(), "text": "", "score": s, "vector": np.array(vec[i])}
             for i, s in [("a2", 0.9), ("b", 0.8), ("a", 0.9)]]  # fmt: skip
    failed = RuntimeError("search failed")
    params = [{"k": 2}, {"k": 3, "exclude": ["a"], "context": {"words": ["b"]}}, {"k": 2}, {"k": 2}]
    answers = reranker.rerank_many([cands, cands, failed, [{"item_id": "x"}]], params)
    assert answers[0] == reranker.rerank(cands, 2)
    assert answers[1] == reranker.rerank(cands, 3, ["a"], {"words": ["b"]})
    assert answers[2] is failed
    assert isinstance(answers[3], KeyError)  # a malformed list fails alone
    assert reranker.info()["calls"] == {"rerank_many": 1, "lists": 4, "rerank": 2}


def test_profile_encoder_keeps_a_warm_items_id_vector_on_edits(tiny_backbone, tmp_path):
    """A catalog edit of an item the model has an ID vector for is encoded with it; a new item without."""
    import asyncio

    import torch

    from coldrec.config import ModelConfig
    from coldrec.model.backbone import load_backbone
    from coldrec.model.checkpoint import EncoderSettings, save_checkpoint
    from coldrec.model.encoder import TextEncoder
    from coldrec.model.id_embedding import IdVocab, save_id_table
    from coldrec.serve.encoder import ProfileEncoder

    tokenizer, backbone = load_backbone(tiny_backbone)
    settings = EncoderSettings.from_configs(ModelConfig(backbone=tiny_backbone))
    save_checkpoint(backbone, tokenizer, settings, tmp_path)
    save_id_table(tmp_path, IdVocab(["shop\x1fi1"], with_scene=True), torch.cat([torch.zeros(1, 32), torch.ones(1, 32)]))
    replica = ProfileEncoder.func_or_class(str(tmp_path), settings.model_dump(), 32)
    texts = ["Digital caliper. Industrial", "Digital caliper. Industrial"]
    vectors = asyncio.run(replica.encode_items(texts, ["i1", "new"], ["shop", "shop"]))
    text_only = TextEncoder.load(tmp_path, device="cpu").encode_items(texts[:1])[0]
    assert np.allclose(vectors[1], text_only, atol=1e-5)  # a new item: its text
    fused = text_only + 1.0
    assert np.allclose(vectors[0], fused / np.linalg.norm(fused), atol=1e-5)  # the warm item keeps its ID vector
