"""Starting the recommendation graph from Python: the CLI's ``coldrec serve``, the demo, the benchmark.

``start_app`` is ``build_app`` started in code, on the index that ``coldrec index`` built for the
config's dataset (``<index.output_dir>/<scene>``, resolved through its LATEST file).
``deploy_config`` is ``serve run serve_configs/local.yaml`` done from Python: the same Serve config
(replicas, CPUs, batch sizes), with chosen app args and port, applied to the running cluster.

Rolling out a new model or index version is a config update: ``deploy_config`` again with the new
``index_dir`` (and ``model_path``) under the same app name. Serve replaces replicas a few at a time:
it stops an old replica, which first finishes its in-flight requests (for up to the deployment's
``graceful_shutdown_timeout_s``, 120 s in serve_configs/), then starts its successor; requests that
arrive meanwhile wait in the queue, so none is dropped (tests/test_serve_rollout.py). For a moment
both versions answer.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import yaml

from coldrec.config import PipelineConfig

APP_NAME = "coldrec"


def default_index_dir(cfg: PipelineConfig) -> Path:
    return Path(cfg.index.output_dir).expanduser().resolve() / cfg.data.scene_name


def start_app(cfg: PipelineConfig, index_dir: str | None = None, port: int | None = None,
              host: str | None = None, address: str | None = None) -> str:
    """Deploy the graph (non-blocking) and return its base URL once ``/healthz`` answers."""
    import httpx
    from ray import serve

    from coldrec.runtime import init_ray
    from coldrec.serve.app import AppArgs, build_app

    init_ray(address)
    host, port = host or cfg.serve.host, port or cfg.serve.port
    serve.start(http_options={"host": host, "port": port})
    args = AppArgs(index_dir=str(Path(index_dir or default_index_dir(cfg)).expanduser().resolve()),
                   num_cpus_per_replica=0.25)
    serve.run(build_app(args), name=APP_NAME, route_prefix="/")
    url = f"http://{host}:{port}"
    for _ in range(120):  # replicas load the model and the index before they answer
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the recommendation app did not become healthy at {url}")


def stop_app() -> None:
    from ray import serve

    serve.delete(APP_NAME)


def serve_forever(cfg: PipelineConfig, index_dir: str | None = None, address: str | None = None) -> None:
    url = start_app(cfg, index_dir=index_dir, address=address)
    print(f"coldrec is serving at {url}  (POST /recommend, GET /healthz, docs at {url}/docs); Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop_app()


def load_serve_config(path: str | Path, args: dict[str, Any] | None = None, host: str | None = None,
                      port: int | None = None) -> dict[str, Any]:
    """A serve_configs/*.yaml as a dict, every application's ``args`` updated with ``args``
    and ``http_options`` with ``host`` / ``port`` where given; deployments stay as written."""
    config = yaml.safe_load(Path(path).read_text())
    http = config.setdefault("http_options", {})
    http.update({k: v for k, v in (("host", host), ("port", port)) if v is not None})
    for app in config["applications"]:
        app["args"] = {**app.get("args", {}), **(args or {})}
    return config


def deploy_config(config: dict[str, Any], wait_s: float = 300.0) -> None:
    """Apply a Serve config to the running cluster, as ``serve run <yaml>`` does, and wait until its
    applications run. Applying a changed config to running apps is a rolling update."""
    from ray import serve
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(copy.deepcopy(config))
    # The same two calls ``serve run <yaml>`` makes (ray/serve/scripts.py); no public API takes a config.
    client = serve_start(http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location)
    client.deploy_apps(schema, _blocking=False)
    names = {app.name for app in schema.applications}
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        apps = serve.status().applications
        states = {name: apps[name].status for name in names if name in apps}
        failed = {n: apps[n].message for n, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")}
        if failed:
            raise RuntimeError(f"Serve could not deploy {failed}")
        if len(states) == len(names) and set(states.values()) == {"RUNNING"}:
            return
        time.sleep(0.5)
    raise TimeoutError(f"applications {sorted(names)} not running after {wait_s:.0f} s: {serve.status()}")
