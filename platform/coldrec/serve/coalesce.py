"""Coalescer: one call of an async batch function for many concurrent requests, without making a
lone request wait.

Why not ``@serve.batch``: in Ray 2.60 it forms each batch as soon as the batch's first item
arrives (plus ``batch_wait_timeout_s``), *before* it waits for a free batch slot. With
``max_concurrent_batches=1`` and no wait, requests arriving one by one become batches of one that
run one after another (100 requests 2 ms apart into a 40 ms batch function: 100 batches of one,
4 s in all); a wait long enough to fill batches under load delays every request at low load.

A Coalescer forms a batch only when a slot is free: at most ``max_concurrent_batches`` run at
once, and a free slot takes everything queued meanwhile (up to ``max_batch_size``). A request at
an idle replica starts at once; under load, batches grow with the queue.

``fn(items) -> results`` returns one result per item, in order; an exception *returned* in an
item's place is raised to that item's caller only, and an exception *raised* by ``fn`` is raised
to every caller in the batch.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        max_batch_size: int = 16,
        batch_wait_timeout_s: float = 0.0,
        max_concurrent_batches: int = 2,
        on_batch: Callable[[int], None] | None = None,
    ):
        """``on_batch(size)`` is told every batch's size as it starts (a metric); it must not raise."""
        self.fn = fn
        self.on_batch = on_batch
        self.max_batch_size, self.batch_wait_timeout_s, self.max_concurrent_batches = 1, 0.0, 1
        self.configure({"max_batch_size": max_batch_size, "batch_wait_timeout_s": batch_wait_timeout_s,
                        "max_concurrent_batches": max_concurrent_batches})  # fmt: skip
        self._queue: deque[tuple[T, asyncio.Future]] = deque()
        self._running = 0  # batches collecting or in flight
        self._collecting = False  # one batch collects at a time, so a wait never splits arrivals
        self._full = asyncio.Event()  # ends a wait early once a whole batch is queued
        self._tasks: set[asyncio.Task] = set()  # the event loop keeps only weak references to tasks
        self.batches = 0  # batches run and items in them, for info()
        self.items = 0

    def configure(self, settings: dict[str, Any]) -> None:
        """Any of max_batch_size (>= 1), batch_wait_timeout_s (>= 0), max_concurrent_batches (>= 1);
        the others stay as they are. Applies from the next batch on."""
        unknown = set(settings) - {"max_batch_size", "batch_wait_timeout_s", "max_concurrent_batches"}
        if unknown:
            raise ValueError(f"unknown batch settings {sorted(unknown)}")
        size = int(settings.get("max_batch_size", self.max_batch_size))
        wait = float(settings.get("batch_wait_timeout_s", self.batch_wait_timeout_s))
        slots = int(settings.get("max_concurrent_batches", self.max_concurrent_batches))
        if size < 1 or wait < 0 or slots < 1:
            raise ValueError(f"need max_batch_size >= 1, batch_wait_timeout_s >= 0, max_concurrent_batches >= 1; "
                             f"got {size}, {wait}, {slots}")  # fmt: skip
        self.max_batch_size, self.batch_wait_timeout_s, self.max_concurrent_batches = size, wait, slots

    async def __call__(self, item: T) -> R:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if len(self._queue) >= self.max_batch_size:
            self._full.set()
        self._start()
        result = await future  # a caller cancelled here (client gone) cancels the future: it is skipped
        if isinstance(result, BaseException):
            raise result
        return result

    def _start(self) -> None:
        if self._queue and self._running < self.max_concurrent_batches and not self._collecting:
            self._running += 1
            self._collecting = True
            # A fresh context, not the request's that happened to start the batch: Serve finds a request's
            # downstream calls through its request context and cancels them when that request is
            # cancelled (a client hanging up), which must not fail its batchmates (serve.batch does the same).
            task = asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        try:
            try:
                self._full.clear()
                if self.batch_wait_timeout_s > 0 and len(self._queue) < self.max_batch_size:
                    try:
                        await asyncio.wait_for(self._full.wait(), self.batch_wait_timeout_s)
                    except asyncio.TimeoutError:
                        pass
                batch = []
                while self._queue and len(batch) < self.max_batch_size:
                    item, future = self._queue.popleft()
                    if not future.done():
                        batch.append((item, future))
            finally:
                self._collecting = False
            self._start()  # what did not fit goes to the next free slot
            if batch:
                await self._run_batch(batch)
        finally:
            self._running -= 1
            self._start()

    async def _run_batch(self, batch: list[tuple[T, asyncio.Future]]) -> None:
        items, futures = [item for item, _ in batch], [future for _, future in batch]
        self.batches, self.items = self.batches + 1, self.items + len(items)
        if self.on_batch is not None:
            self.on_batch(len(items))
        try:
            results: Sequence[Any] = await self.fn(items)
            if len(results) != len(items):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        except Exception as err:  # the whole call failed: each caller gets the error it would have alone
            results = [err] * len(items)
        except BaseException:  # cancelled (the replica is stopping): no caller may wait forever
            for future in futures:
                future.cancel()
            raise
        for future, result in zip(futures, results):
            if not future.done():
                future.set_result(result)
