"""Rolling out new versions of a running app over real HTTP, deployed from serve_configs/local.yaml:

* another index of the same model, through the Retriever's ``user_config`` (reconfigure, no restart);
* a new model and its index, through a config update of the app's args, while a thread keeps
  asking /recommend: every request is answered 200 and the answers switch to the new model_version.

Version A is the tiny backbone; version B the same weights saved as a coldrec checkpoint (a new
version stamp) with an index built from it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_serve import ROOT, TITLES, free_port, tiny_index

from coldrec.index.item_index import ItemIndex
from coldrec.serve.launch import deploy_config, load_serve_config

APP = "coldrec-rollout-test"
EXTRA = "Zircon tuning fork"


def reindexed(folder: Path, backbone: str) -> Path:
    """The same model's index with one more item: what a catalog rebuild produces."""
    from coldrec.model.encoder import TextEncoder

    encoder = TextEncoder.load(backbone, device="cpu")
    rows = [{"item_id": f"i{n}", "scene": "shop", "title": t, "text": f"{t}. Industrial"} for n, t in enumerate(TITLES)]
    rows.append({"item_id": "extra", "scene": "shop", "title": EXTRA, "text": EXTRA})
    meta = {"model_path": backbone, "model_version": encoder.version, "scene": "shop",
            "settings": encoder.settings.model_dump()}  # fmt: skip
    index = ItemIndex.build(rows, encoder.encode_items([r["text"] for r in rows]), "Flat", meta)
    return index.save(folder / "shop" / "rebuilt")


def wait_until(check, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except Exception:  # the app may be between replicas
            pass
        time.sleep(0.3)
    raise AssertionError(f"condition not met within {timeout:.0f} s")


@pytest.fixture(scope="module")
def rollout(ray_session, tiny_backbone, tmp_path_factory):
    import httpx
    from ray import serve

    from coldrec.model.backbone import load_backbone
    from coldrec.model.checkpoint import EncoderSettings, load_settings, save_checkpoint

    tmp = tmp_path_factory.mktemp("rollout")
    model_b = save_checkpoint(*load_backbone(tiny_backbone), EncoderSettings(backbone=tiny_backbone), tmp / "model-b")
    versions = {"A": tiny_index(tmp / "a", tiny_backbone), "A2": reindexed(tmp / "a2", tiny_backbone),
                "B": tiny_index(tmp / "b", str(model_b))}  # fmt: skip
    port = free_port()

    def config(version: str, retriever_index: str | None = None) -> dict:
        cfg = load_serve_config(ROOT / "serve_configs" / "local.yaml", port=port,
                                args={"index_dir": str(versions[version]), "store": str(tmp / "state.sqlite")})
        app = cfg["applications"][0]
        app["name"] = APP
        if retriever_index:
            retriever = next(d for d in app["deployments"] if d["name"] == "Retriever")
            retriever["user_config"] = {"index_dir": str(versions[retriever_index])}
        return cfg

    deploy_config(config("A"))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        wait_until(lambda: http.get("/readyz").status_code == 200)
        yield SimpleNamespace(http=http, config=config, version_b=load_settings(model_b).version, versions=versions)
    serve.delete(APP)
    serve.shutdown()


def test_reconfigure_swaps_in_a_rebuilt_index_of_the_same_model(rollout):
    http, config = rollout.http, rollout.config
    added = http.post("/items", json={"item_id": "live-1", "title": "Basalt mortar and pestle"})
    assert added.status_code == 201, added.text
    assert http.get("/healthz").json()["items"] == len(TITLES) + 1

    deploy_config(config("A", retriever_index="A2"))  # user_config only: replicas reconfigure in place
    wait_until(lambda: http.get("/healthz").json()["items"] == len(TITLES) + 2)
    top = http.post("/recommend", json={"text": EXTRA, "k": 1}).json()["items"]
    assert [i["item_id"] for i in top] == ["extra"]
    # The change log was replayed over the new index: the item added at run time is still there.
    top = http.post("/recommend", json={"text": "Basalt mortar and pestle", "k": 1}).json()["items"]
    assert [i["item_id"] for i in top] == ["live-1"]


def test_new_model_version_rolls_out_without_dropping_requests(rollout):
    import httpx

    http, config, version_b = rollout.http, rollout.config, rollout.version_b
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=120) as client:
            while not stop.is_set():
                reply = client.post("/recommend", json={"text": "gloves for the lab", "k": 3})
                ok = reply.status_code == 200
                answers.append((reply.status_code, reply.json()["model_version"] if ok else reply.text[:300]))

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    try:
        wait_until(lambda: len(answers) >= 3)
        deploy_config(config("B"))
        wait_until(lambda: len(answers) > 5 and {v for _, v in answers[-5:]} == {version_b})
    finally:
        stop.set()
        asker.join(120)
    assert [a for a in answers if a[0] != 200] == []
    assert answers[0][1] == "untrained" and answers[-1][1] == version_b
    assert http.get("/healthz").json() == {"status": "ok", "items": len(TITLES) + 1, "model_version": version_b}


def test_reconfigure_refuses_an_index_of_another_model(rollout):
    from coldrec.serve.retriever import Retriever

    retriever = Retriever.func_or_class(str(rollout.versions["A"]))
    with pytest.raises(ValueError, match="roll a new model out by updating the app's args"):
        asyncio.run(retriever.reconfigure({"index_dir": str(rollout.versions["B"])}))
    assert len(asyncio.run(retriever.sync())) == len(TITLES)  # still serving its own index
