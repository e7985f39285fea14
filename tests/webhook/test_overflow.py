"""Overflow policies: drop_oldest keeps the newest, drop_new keeps the oldest, backpressure never
drops below the bound, flips ``saturated`` over the high-water mark and calls ``on_relief``."""

from __future__ import annotations

import asyncio

from .kit import Publish, Receiver, balanced, put, run, webhook


def _fill(overflow: str, n: int = 25, limit: int = 10):  # type: ignore[no-untyped-def]
    async def body() -> tuple[list[bool], list[int], object]:
        rx = await Receiver().start()
        wh = webhook(rx.url(), overflow=overflow, max_queued_events=limit, batch_size=100)
        accepted = [put(wh, Publish(clientid="c", seq=i)) for i in range(n)]  # not started: nothing drains
        assert wh.queuing == limit and wh.dropped["queue_full"] == n - limit and balanced(wh)
        wh.start()
        await rx.wait_for(lambda: len(rx.events()) == limit)
        await wh.close(1.0)
        await rx.stop()
        assert wh.success == limit and balanced(wh)
        return accepted, [e["seq"] for e in rx.events()], wh

    return run(body())


def test_drop_oldest_keeps_the_newest() -> None:
    accepted, seqs, _ = _fill("drop_oldest")
    assert all(accepted)  # the new event always gets in; older ones make room
    assert seqs == list(range(15, 25))


def test_drop_new_keeps_the_oldest() -> None:
    accepted, seqs, _ = _fill("drop_new")
    assert accepted == [True] * 10 + [False] * 15
    assert seqs == list(range(10))


def test_byte_bound_also_makes_the_queue_full() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), overflow="drop_oldest", max_buffer_bytes="2KB")
        big = "x" * 600
        for i in range(10):
            put(wh, Publish(clientid="c", seq=i, payload=big))
        assert wh.stats()["queuing_bytes"] <= 2048
        assert wh.queuing == 2 and wh.dropped["queue_full"] == 8
        assert not put(wh, Publish(clientid="c", payload="y" * 5000))  # larger than the bound itself
        wh.start()
        await rx.wait_for(lambda: len(rx.events()) == 2)
        assert [e["seq"] for e in rx.events()] == [8, 9]
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_backpressure_saturates_over_high_water_and_relieves_after_drain() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), overflow="backpressure", max_queued_events=10)
        calls: list[str] = []
        wh.on_relief(lambda: calls.append("at once"))  # not saturated: called immediately
        assert calls == ["at once"]
        flags = []
        for i in range(8):
            assert put(wh, Publish(clientid="c", seq=i))
            flags.append(wh.saturated)
        assert flags == [False] * 7 + [True]  # 8 of 10 = the 80% high-water mark
        relieved = asyncio.Event()
        wh.on_relief(relieved.set)
        wh.on_relief(lambda: calls.append("later"))
        assert calls == ["at once"] and not relieved.is_set()
        # Backpressure never drops: past the bound events are still taken (the broker has paused
        # its publishers; what arrives meanwhile is at most one packet per connection).
        results = [put(wh, Publish(clientid="c", seq=8 + i)) for i in range(4)]
        assert results == [True] * 4 and wh.dropped["queue_full"] == 0 and wh.queuing == 12
        wh.start()
        async with asyncio.timeout(5.0):
            await relieved.wait()
        assert calls == ["at once", "later"] and not wh.saturated
        await rx.wait_for(lambda: len(rx.events()) == 12)
        assert sorted(e["seq"] for e in rx.events()) == list(range(12))
        await wh.close(1.0)
        await rx.stop()
        assert balanced(wh)

    run(body())
