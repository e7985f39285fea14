"""A durable webhook and the outage promises, in process with a real receiver: ``max_event_age``,
dead letters, ``webhook-id`` stable across a restart, backpressure retrying without a limit."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web

from mqhook.webhook import Webhook

from .kit import Publish, Receiver, balanced, config, free_port, put, run, until


def test_a_durable_webhook_retries_until_max_event_age_then_dead_letters(tmp_path: Path) -> None:
    async def body() -> None:
        url = f"http://127.0.0.1:{free_port()}/"  # nobody listens: connection refused
        wh = Webhook(
            config(url, durable=True, dead_letter=True, max_event_age="300ms", retry_backoff="20ms",
                   retry_backoff_max="50ms", max_retries=0),
            data_dir=tmp_path,
        )  # fmt: skip
        wh.start()
        put(wh, Publish(clientid="c1", timestamp=int(time.time() * 1000)))
        await until(lambda: wh.dropped["expired"] == 1, timeout=5)
        assert wh.retried > 1  # beyond max_retries = 0: the age is the limit
        assert wh.dead_lettered == 1 and wh.dead is not None and wh.dead.count == 1
        assert wh.dead.select()[0][1] == "expired"
        assert balanced(wh)
        await wh.close(0.1)

    run(body())


def test_the_webhook_id_of_a_spooled_event_is_the_same_after_a_restart(tmp_path: Path) -> None:
    async def body() -> None:
        failing = True

        async def answer(rec: object, request: web.Request) -> web.Response | None:
            return web.Response(status=503) if failing else None

        rx = await Receiver(answer).start()
        cfg = config(rx.url("/"), durable=True, retry_backoff="10ms", retry_backoff_max="10ms")
        wh = Webhook(cfg, data_dir=tmp_path)
        wh.start()
        put(wh, Publish(clientid="c1"))
        await rx.wait_for(lambda: len(rx.requests) >= 2)
        first = rx.requests[0].headers["webhook-id"]
        assert {r.headers["webhook-id"] for r in rx.requests} == {first}
        await wh.close(0.05)
        assert wh.dropped["stopped"] == 0  # durable: stays in the spool
        failing = False
        again = Webhook(cfg, data_dir=tmp_path)
        again.start()
        await until(lambda: again.success == 1)
        assert rx.requests[-1].headers["webhook-id"] == first
        await again.close(1)
        await rx.stop()

    run(body())


def test_backpressure_retries_past_max_retries_and_loses_nothing() -> None:
    async def body() -> None:
        left = {"n": 6}

        async def answer(rec: object, request: web.Request) -> web.Response | None:
            if left["n"] > 0:
                left["n"] -= 1
                return web.Response(status=500)
            return None

        rx = await Receiver(answer).start()
        wh = Webhook(config(rx.url("/"), overflow="backpressure", max_retries=1, retry_backoff="5ms",
                            retry_backoff_max="10ms", inflight_window=1))  # fmt: skip
        wh.start()
        put(wh, Publish(clientid="c1"))
        await until(lambda: wh.success == 1)
        assert wh.retried == 6 and wh.dropped["retries_exhausted"] == 0
        await wh.close(1)
        await rx.stop()

    run(body())


def test_drop_oldest_keeps_max_retries() -> None:
    async def body() -> None:
        async def answer(rec: object, request: web.Request) -> web.Response:
            return web.Response(status=500)

        rx = await Receiver(answer).start()
        wh = Webhook(config(rx.url("/"), max_retries=1, retry_backoff="5ms", retry_backoff_max="10ms"))
        wh.start()
        put(wh, Publish(clientid="c1"))
        await until(lambda: wh.dropped["retries_exhausted"] == 1)
        assert len(rx.requests) == 2
        await wh.close(1)
        await rx.stop()

    run(body())
