"""The Coalescer that shares the Ingress's downstream calls among concurrent requests (no Ray needed)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from coldrec.serve.coalesce import Coalescer

REQUEST = contextvars.ContextVar("request", default=None)  # stands in for Serve's request context


class Recorder:
    """A batch function that records its batches and holds each until released, so tests decide
    what is in flight when (no sleeps, no timing)."""

    def __init__(self, fail_batch: bool = False):
        self.batches: list[list[int]] = []
        self.contexts: list = []  # REQUEST as the batch function saw it
        self.release = asyncio.Event()
        self.fail_batch = fail_batch

    async def __call__(self, items: list[int]) -> list:
        self.batches.append(list(items))
        self.contexts.append(REQUEST.get())
        await self.release.wait()
        if self.fail_batch:
            raise ConnectionError("downstream is down")
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def settle() -> None:
    for _ in range(5):  # a few loop turns: let queued callbacks and new tasks run
        await asyncio.sleep(0)


def test_requests_queued_while_slots_are_busy_form_one_batch():
    async def main():
        work = Recorder()
        coalescer = Coalescer(work, max_batch_size=4, max_concurrent_batches=1)
        first = asyncio.ensure_future(coalescer(1))
        await settle()
        assert work.batches == [[1]]  # an idle coalescer starts a lone request at once
        rest = [asyncio.ensure_future(coalescer(i)) for i in range(2, 8)]
        await settle()
        assert work.batches == [[1]]  # the only slot is busy: the others queue
        work.release.set()
        answers = await asyncio.gather(first, *rest)
        assert answers == [i * 10 for i in range(1, 8)]
        assert work.batches == [[1], [2, 3, 4, 5], [6, 7]]  # a free slot takes up to max_batch_size
        assert (coalescer.batches, coalescer.items) == (3, 7)

    asyncio.run(main())


def test_a_second_slot_starts_a_second_batch():
    async def main():
        work = Recorder()
        coalescer = Coalescer(work, max_batch_size=8, max_concurrent_batches=2)
        calls = [asyncio.ensure_future(coalescer(1))]
        await settle()
        calls += [asyncio.ensure_future(coalescer(i)) for i in (2, 3)]
        await settle()
        calls += [asyncio.ensure_future(coalescer(4))]
        await settle()
        assert work.batches == [[1], [2, 3]]
        work.release.set()
        assert await asyncio.gather(*calls) == [10, 20, 30, 40]
        assert work.batches == [[1], [2, 3], [4]]

    asyncio.run(main())


def test_a_returned_exception_fails_only_its_own_request():
    async def main():
        work = Recorder()
        work.release.set()
        coalescer = Coalescer(work, max_concurrent_batches=1)
        answers = await asyncio.gather(*(coalescer(i) for i in (1, -2, 3)), return_exceptions=True)
        assert answers[0] == 10 and answers[2] == 30
        assert isinstance(answers[1], ValueError) and str(answers[1]) == "bad -2"
        assert work.batches == [[1, -2, 3]]  # arrivals in the same loop turn share a batch

    asyncio.run(main())


def test_a_raised_exception_fails_every_request_of_the_batch_and_no_more():
    async def main():
        work = Recorder(fail_batch=True)
        work.release.set()
        coalescer = Coalescer(work, max_concurrent_batches=1)
        answers = await asyncio.gather(*(coalescer(i) for i in range(3)), return_exceptions=True)
        assert all(isinstance(a, ConnectionError) for a in answers)
        work.fail_batch = False
        assert await coalescer(4) == 40  # the coalescer still works after a failed batch

    asyncio.run(main())


def test_batches_run_outside_the_context_of_the_request_that_started_them():
    async def call(coalescer, item):
        REQUEST.set(f"request {item}")  # Serve would cancel calls made under it if this request were cancelled
        return await coalescer(item)

    async def main():
        work = Recorder()
        work.release.set()
        coalescer = Coalescer(work)
        assert await asyncio.gather(*(call(coalescer, i) for i in range(3))) == [0, 10, 20]
        assert work.contexts == [None] * len(work.batches)

    asyncio.run(main())


def test_a_cancelled_request_is_left_out_of_its_batch():
    async def main():
        work = Recorder()
        coalescer = Coalescer(work, max_concurrent_batches=1)
        first = asyncio.ensure_future(coalescer(1))
        await settle()
        gone, kept = asyncio.ensure_future(coalescer(2)), asyncio.ensure_future(coalescer(3))
        await settle()
        gone.cancel()  # the client went away while the request queued
        work.release.set()
        assert (await first, await kept) == (10, 30)
        assert work.batches == [[1], [3]]

    asyncio.run(main())


def test_a_wait_gathers_arrivals_and_ends_once_a_batch_is_full():
    async def main():
        work = Recorder()
        work.release.set()
        coalescer = Coalescer(work, max_batch_size=3, batch_wait_timeout_s=30.0, max_concurrent_batches=1)
        # Three arrivals fill the batch: the 30 s wait ends at once (a test that waited would time out).
        assert await asyncio.wait_for(asyncio.gather(*(coalescer(i) for i in range(3))), 10) == [0, 10, 20]
        assert work.batches == [[0, 1, 2]]

    asyncio.run(main())


def test_configure_validates_and_applies():
    coalescer = Coalescer(Recorder())
    coalescer.configure({"max_batch_size": 32, "batch_wait_timeout_s": 0.002})
    assert (coalescer.max_batch_size, coalescer.batch_wait_timeout_s, coalescer.max_concurrent_batches) == (32, 0.002, 2)
    with pytest.raises(ValueError, match="max_batch_size >= 1"):
        coalescer.configure({"max_batch_size": 0})
    with pytest.raises(ValueError, match="unknown batch settings"):
        coalescer.configure({"batch_size": 8})
    assert coalescer.max_batch_size == 32  # a refused update changes nothing


def test_on_batch_hears_every_batch_size():
    async def main():
        sizes: list[int] = []
        work = Recorder()
        coalescer = Coalescer(work, max_batch_size=4, max_concurrent_batches=1, on_batch=sizes.append)
        first = asyncio.ensure_future(coalescer(1))
        await settle()
        rest = [asyncio.ensure_future(coalescer(i)) for i in range(2, 7)]
        await settle()
        work.release.set()
        await asyncio.gather(first, *rest)
        assert sizes == [len(b) for b in work.batches] == [1, 4, 1]

    asyncio.run(main())
