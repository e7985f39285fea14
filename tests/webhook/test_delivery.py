"""Delivery against a real receiver: batching shape, retries, Retry-After, timeouts, outages, close."""

from __future__ import annotations

import email.utils
import time

from aiohttp import web

from .kit import Connected, Publish, Received, Receiver, balanced, free_port, put, run, until, webhook


def test_batch_size_1_sends_one_object_per_request_like_emqx() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), name="one")
        wh.start()
        for i in range(5):
            assert put(wh, Publish(clientid="c1", seq=i))
        put(wh, Connected(clientid="c1", timestamp=7))
        await rx.wait_for(lambda: len(rx.requests) == 6)
        await until(lambda: wh.success == 6)
        for rec in rx.requests:
            data = rec.json()
            assert isinstance(data, dict)
            assert rec.method == "POST" and rec.path == "/hook"
            assert rec.headers["Content-Type"] == "application/json"
            assert data["metadata"] == {"rule_id": "one_WH_D"}
        seqs = sorted(e["seq"] for e in rx.events() if e["event"] == "message.publish")
        assert seqs == [0, 1, 2, 3, 4]
        assert next(e for e in rx.events() if e["event"] == "client.connected")["timestamp"] == 7
        await wh.close(1.0)
        await rx.stop()
        assert wh.requests == 6 and balanced(wh)

    run(body())


def test_batch_size_100_sends_arrays_of_at_most_100() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), batch_size=100)
        for i in range(250):  # queued before start: the sender finds full batches
            put(wh, Publish(clientid=f"c{i % 7}", seq=i))
        wh.start()
        await rx.wait_for(lambda: len(rx.events()) == 250)
        sizes = sorted(len(rec.json()) for rec in rx.requests)
        assert sizes == [50, 100, 100]
        assert all(isinstance(rec.json(), list) for rec in rx.requests)
        assert sorted(e["seq"] for e in rx.events()) == list(range(250))
        assert all(e["metadata"]["rule_id"] == "wh_WH_D" for e in rx.events())
        await until(lambda: wh.success == 250)
        assert wh.requests == 3 and balanced(wh)
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_batch_time_lingers_for_a_partial_batch() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), batch_size=100, batch_time="400ms")
        wh.start()
        await until(lambda: wh._queue.waiter is not None)  # the sender reached its wait ...
        assert wh._queue.want == 1  # ... for a first event: batch_time counts from that one
        started = time.monotonic()
        for i in range(3):
            put(wh, Publish(clientid="c", seq=i))
        await rx.wait_for(lambda: rx.requests, timeout=3.0)
        waited = rx.requests[0].at - started
        assert 0.3 <= waited < 2.0, waited
        assert [e["seq"] for e in rx.requests[0].json()] == [0, 1, 2]
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_full_batch_does_not_wait_for_batch_time() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), batch_size=10, batch_time="10s")
        wh.start()
        started = time.monotonic()
        for i in range(10):
            put(wh, Publish(clientid="c", seq=i))
        await rx.wait_for(lambda: rx.requests, timeout=3.0)
        assert rx.requests[0].at - started < 1.0
        assert len(rx.requests[0].json()) == 10
        await wh.close(1.0)
        await rx.stop()

    run(body())


def _fail_first(status: int, retry_after: str | None = None, times: int = 1):  # type: ignore[no-untyped-def]
    count = {"n": 0}

    async def handler(rec: Received, request: web.Request) -> web.Response | None:
        count["n"] += 1
        if count["n"] <= times:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.Response(status=status, text="busy", headers=headers)
        return None

    return handler


def test_503_with_retry_after_waits_that_long_then_succeeds() -> None:
    async def body() -> None:
        rx = await Receiver(_fail_first(503, "1")).start()
        # Backoff 0: without Retry-After the retry would be immediate.
        wh = webhook(rx.url(), retry_backoff="0ms", retry_backoff_max="30s")
        wh.start()
        put(wh, Publish(clientid="c"))
        await rx.wait_for(lambda: len(rx.requests) == 2, timeout=5.0)
        gap = rx.requests[1].at - rx.requests[0].at
        assert 0.9 <= gap < 3.0, gap
        await until(lambda: wh.success == 1)
        assert wh.retried == 1 and wh.failed == 0 and wh.requests == 2
        assert rx.requests[0].headers["webhook-id"] == rx.requests[1].headers["webhook-id"]
        assert "503" in (wh.last_error or "") and wh.last_error_at is not None
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_retry_after_http_date_and_cap_at_backoff_max() -> None:
    async def body() -> None:
        date = email.utils.formatdate(time.time() + 3600, usegmt=True)  # an hour: capped to 0.3s
        rx = await Receiver(_fail_first(429, date)).start()
        wh = webhook(rx.url(), retry_backoff="0ms", retry_backoff_max="300ms")
        wh.start()
        put(wh, Publish(clientid="c"))
        await rx.wait_for(lambda: len(rx.requests) == 2, timeout=5.0)
        gap = rx.requests[1].at - rx.requests[0].at
        assert 0.2 <= gap < 2.0, gap
        await until(lambda: wh.success == 1)
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_400_is_not_retried_and_counts_failed() -> None:
    async def body() -> None:
        rx = await Receiver(_fail_first(400, times=1000)).start()
        wh = webhook(rx.url(), retry_backoff="0ms")
        wh.start()
        put(wh, Publish(clientid="c"))
        await until(lambda: wh.failed == 1)
        await wh.close(1.0)
        await rx.stop()
        assert len(rx.requests) == 1 and wh.requests == 1 and wh.retried == 0 and wh.success == 0
        assert wh.last_error is not None and "HTTP 400" in wh.last_error and "busy" in wh.last_error
        assert balanced(wh)

    run(body())


def test_500_is_retried_by_default_and_retry_on_is_configurable() -> None:
    async def body() -> None:
        rx = await Receiver(_fail_first(500, times=1)).start()
        wh = webhook(rx.url(), retry_backoff="0ms")
        narrow = webhook(rx.url(), name="narrow", retry_on=[429], retry_backoff="0ms")
        wh.start()
        narrow.start()
        put(wh, Publish(clientid="c"))
        await until(lambda: wh.success == 1)
        rx.handler = _fail_first(500, times=1)
        put(narrow, Publish(clientid="c"))
        await until(lambda: narrow.failed == 1)
        assert wh.retried == 1 and narrow.retried == 0
        await wh.close(1.0)
        await narrow.close(1.0)
        await rx.stop()

    run(body())


def test_timeout_is_retried_then_dropped_and_counted() -> None:
    async def body() -> None:
        rx = Receiver()

        async def slow(rec: Received, request: web.Request) -> None:
            await rx.release.wait()

        rx.handler = slow
        await rx.start()
        wh = webhook(rx.url(), request_timeout="300ms", max_retries=1, retry_backoff="10ms")
        wh.start()
        started = time.monotonic()
        put(wh, Publish(clientid="c"))
        await until(lambda: wh.dropped["retries_exhausted"] == 1, timeout=5.0)
        elapsed = time.monotonic() - started
        assert 0.55 <= elapsed < 3.0, elapsed
        assert len(rx.requests) == 2 and wh.requests == 2 and wh.retried == 1
        assert wh.success == 0 and wh.failed == 0 and "timeout" in (wh.last_error or "")
        assert balanced(wh)
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_receiver_down_then_back_loses_nothing() -> None:
    async def body() -> None:
        port = free_port()
        wh = webhook(
            f"http://127.0.0.1:{port}/in", max_retries=50, retry_backoff="50ms", retry_backoff_max="200ms", pool_size=4
        )
        wh.start()
        for i in range(40):
            put(wh, Publish(clientid=f"c{i % 3}", seq=i))
        await until(lambda: wh.retried > 0 and "refused" in (wh.last_error or ""))
        rx = await Receiver().start(port)
        await rx.wait_for(lambda: {e["seq"] for e in rx.events()} == set(range(40)), timeout=10.0)
        await until(lambda: wh.success == 40)
        assert sum(wh.dropped.values()) == 0 and wh.failed == 0 and balanced(wh)
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_close_drains_what_it_can_then_counts_the_rest_stopped() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url())
        wh.start()
        for i in range(20):
            put(wh, Publish(clientid="c", seq=i))
        await wh.close(5.0)
        assert wh.success == 20 and len(rx.events()) == 20
        assert not put(wh, Publish(clientid="c")) and wh.dropped["stopped"] == 1
        await rx.stop()

        # Retries with full jitter may wait almost nothing: enough of them never run out in 0.3 s, so
        # every event is still in flight or queued when close() gives up.
        down = webhook(f"http://127.0.0.1:{free_port()}/", retry_backoff="5s", retry_backoff_max="5s", max_retries=1000)
        down.start()
        for i in range(5):
            put(down, Publish(clientid="c", seq=i))
        started = time.monotonic()
        await down.close(0.3)
        assert time.monotonic() - started < 2.0
        assert down.dropped["stopped"] == 5 and down.inflight == 0 and balanced(down)

    run(body())


def test_get_and_delete_send_no_body() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        get = webhook(rx.url("/g"), name="g", method="GET")
        delete = webhook(rx.url("/d"), name="d", method="Delete")
        for wh in (get, delete):
            wh.start()
            put(wh, Publish(clientid="c"))
        await rx.wait_for(lambda: len(rx.requests) == 2)
        assert sorted((r.method, r.body) for r in rx.requests) == [("DELETE", b""), ("GET", b"")]
        await get.close(1.0)
        await delete.close(1.0)
        await rx.stop()

    run(body())
