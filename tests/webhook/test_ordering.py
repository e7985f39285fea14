"""ordering = "per_client": with inflight_window > 1 and a receiver that answers after random
delays, each client's events still arrive in order, and no client ever has two requests open."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import web

from .kit import Publish, Received, Receiver, balanced, put, run, until, webhook

CLIENTS = 6
PER_CLIENT = 30


@pytest.mark.parametrize("batch_size", [1, 4])
def test_per_client_order_holds_with_a_wide_inflight_window(batch_size: int) -> None:
    async def body() -> None:
        rng = random.Random(1234 + batch_size)
        open_now: dict[str, int] = {}
        overlap: list[str] = []
        peak = {"n": 0, "open": 0}
        finished: list[tuple[str, int]] = []  # (clientid, seq) when the receiver's answer is ready

        async def delayed(rec: Received, request: web.Request) -> None:
            clients = {e["clientid"] for e in rec.events()}
            for c in clients:
                open_now[c] = open_now.get(c, 0) + 1
                if open_now[c] > 1:
                    overlap.append(c)
            peak["open"] += 1
            peak["n"] = max(peak["n"], peak["open"])
            await asyncio.sleep(rng.uniform(0.0, 0.02))  # the receiver answers late on purpose
            peak["open"] -= 1
            for c in clients:
                open_now[c] -= 1
            finished.extend((e["clientid"], e["seq"]) for e in rec.events())

        rx = await Receiver(delayed).start()
        wh = webhook(rx.url(), ordering="per_client", inflight_window=16, pool_size=8, batch_size=batch_size)
        wh.start()
        for i in range(PER_CLIENT):
            for c in range(CLIENTS):
                put(wh, Publish(clientid=f"c{c}", seq=i))
            if i % 5 == 0:
                await asyncio.sleep(0)  # deliberate, not a wait: deliveries run between new events
        total = CLIENTS * PER_CLIENT
        await rx.wait_for(lambda: len(rx.events()) == total, timeout=20.0)
        await until(lambda: wh.success == total)
        seen: dict[str, list[int]] = {}
        for ev in rx.events():  # requests in arrival order, events in body order
            seen.setdefault(ev["clientid"], []).append(ev["seq"])
        assert seen == {f"c{c}": list(range(PER_CLIENT)) for c in range(CLIENTS)}
        completed: dict[str, list[int]] = {}
        for client, seq in finished:  # with random delays, only per-client ordering keeps this sorted
            completed.setdefault(client, []).append(seq)
        assert completed == seen
        assert overlap == []
        assert peak["n"] > 1  # clients did proceed concurrently
        await wh.close(1.0)
        await rx.stop()
        assert balanced(wh)

    run(body())


def test_per_client_order_survives_retries() -> None:
    async def body() -> None:
        calls = {"n": 0}

        async def flaky(rec: Received, request: web.Request) -> web.Response | None:
            calls["n"] += 1
            return web.Response(status=503) if calls["n"] % 3 == 0 else None

        rx = await Receiver(flaky).start()
        wh = webhook(rx.url(), ordering="per_client", inflight_window=8, retry_backoff="5ms", max_retries=10)
        wh.start()
        for i in range(20):
            for c in range(3):
                put(wh, Publish(clientid=f"c{c}", seq=i))
        await until(lambda: wh.success == 60, timeout=10.0)
        assert wh.retried > 0 and len(rx.requests) == wh.requests
        seen: dict[str, list[int]] = {}
        for rec in rx.requests:
            for ev in rec.events():
                seq = seen.setdefault(ev["clientid"], [])
                if not seq or seq[-1] != ev["seq"]:  # a retry repeats the same event
                    seq.append(ev["seq"])
        assert seen == {f"c{c}": list(range(20)) for c in range(3)}
        await wh.close(1.0)
        await rx.stop()

    run(body())
