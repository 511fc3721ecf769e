"""Prometheus metrics for the HTTP app, through Ray's metrics system (scraped from each node's
metrics agent, like Serve's own ``ray_serve_*`` series).

    coldrec_http_requests_total{route, method, status}
    coldrec_http_errors_total{route, method, status}         (status >= 400)
    coldrec_http_latency_ms{route, method}                   histogram
    coldrec_catalog_items / coldrec_catalog_seq              gauges, set by the Retriever
    coldrec_batch_size{stage}                                histogram: requests per coalesced
                                                             downstream call (stage: recommend, lookup)

``route`` is the route's template (``/items/{item_id}``), never the raw path, so ids do not
explode the series count. Metric objects are made on first use, inside the replica process.
"""

from __future__ import annotations

import time
from functools import lru_cache

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64]


@lru_cache(maxsize=1)
def http_metrics():
    from ray.util.metrics import Counter, Histogram

    tags = ("route", "method", "status")
    return (
        Counter("coldrec_http_requests", "HTTP requests answered by the ingress", tag_keys=tags),
        Counter("coldrec_http_errors", "HTTP requests answered with status >= 400", tag_keys=tags),
        Histogram("coldrec_http_latency_ms", "Ingress time per request (ms)", LATENCY_BOUNDARIES_MS,
                  tag_keys=("route", "method")),  # fmt: skip
    )


@lru_cache(maxsize=1)
def catalog_gauges():
    from ray.util.metrics import Gauge

    return (
        Gauge("coldrec_catalog_items", "Items in a Retriever replica's index", tag_keys=("model_version",)),
        Gauge("coldrec_catalog_seq", "Last catalog change a Retriever replica applied", tag_keys=("model_version",)),
    )


@lru_cache(maxsize=1)
def batch_histogram():
    from ray.util.metrics import Histogram

    return Histogram("coldrec_batch_size", "Requests sharing one coalesced downstream call",
                     BATCH_BOUNDARIES, tag_keys=("stage",))  # fmt: skip


def batch_recorder(stage: str):
    """``on_batch`` for a Coalescer: observes each batch's size under ``stage``."""

    def record(size: int) -> None:
        try:
            batch_histogram().observe(size, tags={"stage": stage})
        except Exception:  # metrics must never fail a request (e.g. outside a Ray worker)
            pass

    return record


def install_metrics(api: FastAPI) -> None:
    api.add_middleware(MeasureRequests)


class MeasureRequests:
    """ASGI middleware: counts and times every HTTP request, errors (status >= 400) apart.

    A plain ASGI wrapper that notes the status as the response starts: Starlette's
    ``@app.middleware("http")`` runs every request through a task group and memory streams, which
    cost ~0.4 ms of CPU per request, more than the rest of the ingress's own work on a /recommend.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts: an exception no handler turned into one

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            _record(scope, status, (time.perf_counter() - start) * 1000)


def _record(scope: Scope, status: int, latency_ms: float) -> None:
    route = scope.get("route")  # set by the router on the scope it was given: this one
    tags = {"route": getattr(route, "path", "unmatched"), "method": scope["method"], "status": str(status)}
    try:
        requests, errors, latency = http_metrics()
        requests.inc(tags=tags)
        if status >= 400:
            errors.inc(tags=tags)
        latency.observe(latency_ms, tags={"route": tags["route"], "method": tags["method"]})
    except Exception:  # metrics must never fail a request (e.g. outside a Ray worker)
        pass
