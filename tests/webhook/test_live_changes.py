"""WebhookManager's live changes (the REST API's create, replace, delete): what happens to queued
events, requests in flight and counters, against real HTTP receivers."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from mqhook.webhook import WebhookManager

from .kit import Publish, Received, Receiver, balanced, config, free_port, put, run, until


def _manager(*cfgs: object) -> tuple[WebhookManager, list[int]]:
    mgr = WebhookManager(cfgs, node="mqhook@test")  # type: ignore[arg-type]
    changes: list[int] = []
    mgr.on_change = lambda: changes.append(len(mgr.consumers))
    return mgr, changes


def test_add_starts_a_webhook_that_gets_the_next_event_and_announces_the_change() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        mgr, changes = _manager()
        mgr.start()
        hook = mgr.add(config(rx.url(), name="new"))
        assert changes == [1] and mgr.source("new") == "api" and [w.name for w in mgr.consumers] == ["new"]
        put(hook, Publish(clientid="c"))
        await rx.wait_for(lambda: len(rx.requests) == 1)
        await mgr.close(1.0)
        await rx.stop()

    run(body())


def test_replace_keeps_queued_events_and_counters_and_sends_them_on_the_new_settings() -> None:
    async def body() -> None:
        down = free_port()  # nobody listens: events wait for their retries
        rx = await Receiver().start()
        cfg = config(f"http://127.0.0.1:{down}/", name="w", max_retries=1000, retry_backoff="10s",
                     retry_backoff_max="10s", inflight_window=1)  # fmt: skip
        mgr, changes = _manager(cfg)
        mgr.start()
        old = mgr.get("w")
        assert old is not None
        for i in range(5):
            put(old, Publish(clientid=f"c{i}"))
        await until(lambda: old.requests >= 1 and old.queuing == 4)  # 1 in flight (backing off), 4 queued
        new_cfg = msgspec.structs.replace(cfg, url=rx.url("/moved"), headers={"x-changed": "yes"})
        new = mgr.replace(new_cfg)
        assert mgr.get("w") is new and new is not old and changes == [1]
        assert new.matched == 5 and new.queuing == 4 and new.inflight == 1 and balanced(new)
        # The 4 queued events go to the new receiver with the new header; the one in flight stays
        # with the old settings until the drain budget ends it (counted stopped, on the new webhook).
        await rx.wait_for(lambda: len(rx.requests) == 4)
        assert {r.path for r in rx.requests} == {"/moved"} and all(r.headers["x-changed"] == "yes" for r in rx.requests)
        await until(lambda: new.success == 4)
        assert new.requests >= 5 and new.deliveries[-1][3] == "2xx"  # the old attempts are in the same log
        await mgr.close(0.1)
        assert new.dropped["stopped"] == 1 and balanced(new)
        await rx.stop()

    run(body())


def test_replace_keeps_only_what_the_new_bounds_take_and_counts_the_rest() -> None:
    async def body() -> None:
        cfg = config(f"http://127.0.0.1:{free_port()}/", name="w", enable=False)  # not started: all stay queued
        mgr, _ = _manager(cfg)
        mgr.start()
        old = mgr.get("w")
        assert old is not None
        for i in range(10):
            put(old, Publish(clientid=f"c{i}"))
        new = mgr.replace(msgspec.structs.replace(cfg, max_queued_events=3))
        assert new.queuing == 3 and new.dropped["queue_full"] == 7 and new.matched == 10 and balanced(new)
        await mgr.close(0.1)

    run(body())


def test_a_request_in_flight_during_a_replace_finishes_on_the_old_settings_and_counts_on_the_new() -> None:
    async def body() -> None:
        gate = asyncio.Event()

        async def slow(rec: Received, request: web.Request) -> web.StreamResponse | None:
            await gate.wait()
            return None

        rx_old = await Receiver(slow).start()
        rx_new = await Receiver().start()
        cfg = config(rx_old.url("/old"), name="w")
        mgr, _ = _manager(cfg)
        mgr.start()
        old = mgr.get("w")
        assert old is not None
        put(old, Publish(clientid="a"))
        await rx_old.wait_for(lambda: len(rx_old.requests) == 1)
        new = mgr.replace(msgspec.structs.replace(cfg, url=rx_new.url("/new")))
        put(new, Publish(clientid="b"))
        await until(lambda: new.success == 1)
        assert new.inflight == 1  # the old request, still waiting at the old receiver
        gate.set()
        await until(lambda: new.success == 2)
        assert new.inflight == 0 and balanced(new) and len(rx_old.requests) == 1
        await mgr.close(1.0)
        await rx_old.stop()
        await rx_new.stop()

    run(body())


def test_remove_delivers_what_was_queued_then_stops_taking_events() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        mgr, changes = _manager(config(rx.url(), name="gone", batch_size=10, batch_time="1h"))
        mgr.start()
        hook = mgr.get("gone")
        assert hook is not None
        for i in range(3):
            put(hook, Publish(clientid=f"c{i}"))
        mgr.remove("gone")
        assert mgr.get("gone") is None and changes == [0] and "gone" not in mgr
        await rx.wait_for(lambda: len(rx.events()) == 3)  # the linger is cut short by the close
        assert put(hook, Publish(clientid="late")) is False and hook.dropped["stopped"] == 1
        await mgr.close(1.0)
        await rx.stop()

    run(body())
