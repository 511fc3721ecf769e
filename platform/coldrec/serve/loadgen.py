"""A cheap closed-loop HTTP load generator for the serving benchmark.

It shares the machine with the server, so it spends as little CPU per request as it can: one
asyncio loop in its own process, raw HTTP/1.1 keep-alive connections over asyncio streams (no
client library, no TLS), request bodies serialised once up front. ``concurrency`` clients each
send a request, wait for the answer, and send the next (closed loop); throughput and latency are
those of the requests that finished inside the measured window (after the warm-up).

A catalog updater can run in the same loop (``updates_per_s`` > 0): it cycles POST a new item ->
PUT it with a new title -> DELETE it, one write per tick, and after every acknowledged write asks
/recommend with the item's own text to check the edit is already visible (the new text in the top
``probe_k``, 5 by default, the deleted item nowhere in them).

    run_level("127.0.0.1", 8000, bodies, concurrency=8, duration_s=10, warmup_s=3, updates_per_s=2)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import numpy as np


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; reopened after an error or ``Connection: close``."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        try:
            self.writer.write(head + body)
            await self.writer.drain()
            return await self._response()
        except BaseException:
            self.close()
            raise

    async def _response(self) -> tuple[int, bytes]:
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")  # the empty trailer
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    p50, p95, p99 = np.percentile(np.asarray(values) * 1000.0, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


async def _client(conn: HttpConnection, bodies: list[bytes], offset: int, start: float, end: float,
                  latencies: list[float], errors: list[str], answered: list[int]) -> None:
    for n in itertools.count(offset):
        sent = time.perf_counter()
        if sent >= end:
            return
        try:
            status, reply = await conn.request("POST", "/recommend", bodies[n % len(bodies)])
            failure = None if status == 200 else f"HTTP {status}: {reply[:200].decode(errors='replace')}"
        except Exception as err:  # a dropped connection is an error to count, not a crash
            failure = f"{type(err).__name__}: {err}"
        done = time.perf_counter()
        answered[0] += 1
        if not start <= done <= end:
            continue  # finished during the warm-up, or after the window closed
        if failure:
            errors.append(failure)
        else:
            latencies.append(done - sent)


async def _probe(conn: HttpConnection, text: str, item_id: str, present: bool, k: int) -> bool:
    status, reply = await conn.request("POST", "/recommend", json.dumps({"text": text, "k": k}).encode())
    found = status == 200 and item_id in {i["item_id"] for i in json.loads(reply)["items"]}
    return found == present


async def _updater(host: str, port: int, rate: float, start: float, end: float, tag: str,
                   probe_k: int) -> dict[str, Any]:
    conn, probe = HttpConnection(host, port), HttpConnection(host, port)
    stats: dict[str, Any] = {"writes": 0, "write_errors": 0, "checks": 0, "visible": 0, "latencies": []}
    for n in itertools.count():
        tick = start + n / rate
        if tick >= end:
            break
        await asyncio.sleep(max(0.0, tick - time.perf_counter()))
        item, step = f"bench-{tag}-{n // 3}", n % 3
        title = f"Benchmark probe {tag} {n // 3} {'revised' if step else 'first'} edition"
        method, path, body = [("POST", "/items", {"item_id": item, "title": title}),
                              ("PUT", f"/items/{item}", {"title": title}), ("DELETE", f"/items/{item}", None)][step]
        sent = time.perf_counter()
        try:
            status, _ = await conn.request(method, path, json.dumps(body).encode() if body else b"")
            ok = status in (200, 201)
            if ok:
                stats["latencies"].append(time.perf_counter() - sent)
                stats["checks"] += 1
                stats["visible"] += await _probe(probe, title, item, present=step < 2, k=probe_k)
        except Exception:
            ok = False
        stats["writes"] += 1
        stats["write_errors"] += not ok
    conn.close()
    probe.close()
    return stats


async def _level(host: str, port: int, bodies: list[bytes], concurrency: int, duration_s: float, warmup_s: float,
                 updates_per_s: float, tag: str, probe_k: int) -> dict[str, Any]:
    now = time.perf_counter()
    start, end = now + warmup_s, now + warmup_s + duration_s
    latencies: list[float] = []
    errors: list[str] = []
    answered = [0]  # every answer, warm-up included: what the server's CPU time is divided by
    conns = [HttpConnection(host, port) for _ in range(concurrency)]
    tasks = [_client(c, bodies, i * 997, start, end, latencies, errors, answered) for i, c in enumerate(conns)]
    if updates_per_s > 0:
        tasks.append(_updater(host, port, updates_per_s, start, end, tag, probe_k))
    results = await asyncio.gather(*tasks)
    for c in conns:
        c.close()
    out: dict[str, Any] = {"concurrency": concurrency, "requests": len(latencies), "errors": len(errors),
                           "answered": answered[0],
                           "rps": len(latencies) / duration_s, **percentiles(latencies),
                           "error_samples": sorted(set(errors))[:3]}  # fmt: skip
    if updates_per_s > 0:
        stats = results[-1]
        out["updates"] = {**{k: v for k, v in stats.items() if k != "latencies"},
                          "writes_per_s": stats["writes"] / duration_s, **percentiles(stats["latencies"])}  # fmt: skip
    return out


def run_level(host: str, port: int, bodies: list[dict[str, Any]], concurrency: int, duration_s: float,
              warmup_s: float = 2.0, updates_per_s: float = 0.0, tag: str = "0", probe_k: int = 5) -> dict[str, Any]:
    """One closed-loop level: {concurrency, requests, errors, answered, rps, p50_ms, p95_ms, p99_ms,
    error_samples[, updates]}; ``requests``/``errors`` count the measured window, ``answered`` every reply.

    ``bodies``: /recommend request bodies, sent round robin (client i starts at a different one);
    ``tag`` keeps the updater's item ids apart between levels; ``probe_k``: how many items each
    visibility check asks for. Meant to run in its own process.
    """
    encoded = [json.dumps(b).encode() for b in bodies]
    return asyncio.run(_level(host, port, encoded, concurrency, duration_s, warmup_s, updates_per_s, tag, probe_k))
