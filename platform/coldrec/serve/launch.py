"""Starting the recommendation graph from Python: the CLI's ``coldrec serve`` and the demo.

``serve run serve_configs/local.yaml`` is the config-file way; this module is the same
``build_app`` started in code, on the index that ``coldrec index`` built for the config's
dataset (``<index.output_dir>/<scene>``, resolved through its LATEST file).
"""

from __future__ import annotations

import time
from pathlib import Path

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
