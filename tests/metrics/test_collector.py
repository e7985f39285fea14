"""The collector reports what happened: broker counters after real MQTT traffic, webhook
outcomes and histograms after real HTTP exchanges, event-loop lag after a blocked loop."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from prometheus_client import generate_latest

from mqhook.app import App
from mqhook.broker.broker import Broker
from mqhook.broker.settings import MqttConfig
from mqhook.broker.stats import Stats
from mqhook.config import load
from mqhook.metrics import LoopLag, build_registry
from mqhook.webhook import Webhook, parse_webhook
from mqhook.webhook.counters import Histogram
from mqhook.webhook.request import created_ms

from . import kit
from .kit import Event, Receiver, put, value


def _webhook(url: str, **settings: Any) -> Webhook:
    return Webhook(parse_webhook({"name": settings.pop("name", "wh"), "url": url, **settings}, "$.webhooks[0]"))


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class _Clock:
    """The broker's clock; this broker routes nothing, so nothing reads it."""

    def time(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        raise AssertionError("no timers expected")


def _scrape_webhook(wh: Webhook) -> kit.Samples:
    registry = build_registry(Broker(MqttConfig(), Stats(), _Clock()), [wh], process=False)
    return kit.parse(generate_latest(registry).decode())


# -- broker counters, end to end in one process ----------------------------------------------------


async def _mqtt_traffic(data_dir: str) -> tuple[kit.Samples, dict[str, Any]]:
    admin = {"bind": "127.0.0.1:0", "default_password": "collector-test"}
    cfg = load(environ={}, overrides={"mqtt": {"bind": "127.0.0.1:0"}, "admin": admin, "data_dir": data_dir})
    app = App(cfg)
    await app.start()
    try:
        host, port = app.mqtt_address.rsplit(":", 1)
        sub_r, sub_w = await asyncio.open_connection(host, int(port))
        sub_w.write(kit.connect("sub") + kit.subscribe("t/#", qos=1))
        assert (await kit.read_packet(sub_r))[0] == 2  # CONNACK
        assert (await kit.read_packet(sub_r))[0] == 9  # SUBACK
        pub_r, pub_w = await asyncio.open_connection(host, int(port))
        pub_w.write(kit.connect("pub"))
        assert (await kit.read_packet(pub_r))[0] == 2
        pub_w.write(kit.publish("t/a", b"x" * 10) + kit.publish("t/b", b"y", qos=1, packet_id=7))
        pub_w.write(kit.publish("nobody/here", b"z"))
        assert (await kit.read_packet(pub_r))[0] == 4  # PUBACK
        got = [(await kit.read_packet(sub_r))[0] for _ in range(2)]
        assert got == [3, 3]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{app.admin_address}/metrics") as resp:
                text = await resp.text()
            login = {"username": "admin", "password": "collector-test"}
            async with http.post(f"http://{app.admin_address}/api/v1/login", json=login) as resp:
                token = (await resp.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"http://{app.admin_address}/api/v1/stats", headers=headers) as resp:
                stats = await resp.json()
        for w in (pub_w, sub_w):
            w.close()
        return kit.parse(text), stats
    finally:
        await app.stop()


def test_broker_counters_after_real_mqtt_traffic(tmp_path: Path) -> None:
    m, stats = asyncio.run(_mqtt_traffic(str(tmp_path)))
    assert value(m, "mqhook_connections") == 2
    assert value(m, "mqhook_sessions") == 2
    assert value(m, "mqhook_subscriptions") == 1
    assert value(m, "mqhook_connects_total", result="success") == 2
    assert value(m, "mqhook_packets_received_total", type="PUBLISH") == 3
    assert value(m, "mqhook_packets_received_total", type="SUBSCRIBE") == 1
    assert value(m, "mqhook_packets_sent_total", type="PUBACK") == 1
    assert value(m, "mqhook_messages_received_total", qos="0") == 2
    assert value(m, "mqhook_messages_received_total", qos="1") == 1
    assert value(m, "mqhook_messages_sent_total", qos="0") == 1
    assert value(m, "mqhook_messages_sent_total", qos="1") == 1
    assert value(m, "mqhook_messages_dropped_total", reason="no_subscribers") == 1
    assert value(m, "mqhook_authorization_checks_total", action="publish", result="allow") == 3
    assert value(m, "mqhook_authorization_checks_total", action="subscribe", result="allow") == 1
    assert value(m, "mqhook_authorization_checks_total", action="publish", result="deny") == 0
    assert value(m, "mqhook_received_bytes_total") == stats["bytes_received"] > 0
    assert value(m, "mqhook_sent_bytes_total") == stats["bytes_sent"] > 0
    assert stats["authorization"]["publish"] == {"allow": 3, "deny": 0}


# -- webhook outcomes and histograms against a real receiver --------------------------------------


def test_webhook_outcomes_and_histograms_per_request() -> None:
    async def body() -> Webhook:
        rx = await Receiver(kit.flaky).start()
        wh = _webhook(rx.url(), max_retries=1, retry_backoff="5ms", retry_backoff_max="10ms")
        wh.start()
        for i in range(30):
            put(wh, Event(clientid=f"c{i}", timestamp=time.time_ns() // 1_000_000 - 250))
        await _until(lambda: wh.success + wh.failed + sum(wh.dropped.values()) == 30)
        await wh.close(1.0)
        await rx.stop()
        assert wh.requests == rx.requests
        assert wh.outcomes["2xx"] == rx.statuses.get(200, 0) > 0
        assert wh.outcomes["5xx"] == rx.statuses.get(503, 0) > 0
        assert wh.outcomes["4xx"] == rx.statuses.get(400, 0) > 0
        return wh

    wh = asyncio.run(body())
    assert sum(wh.outcomes.values()) == wh.requests
    assert wh.request_seconds.count == wh.requests  # one observation per attempt
    assert wh.batch_events.count == wh.requests - wh.retried  # one per request built (batch_size 1)
    assert wh.batch_events.sum == wh.batch_events.count
    assert wh.delivery_seconds.count == wh.success  # one per delivered event
    assert wh.delivery_seconds.sum / wh.delivery_seconds.count >= 0.25  # events were 250 ms old
    m = _scrape_webhook(wh)
    assert value(m, "mqhook_webhook_requests_total", webhook="wh", outcome="5xx") == wh.outcomes["5xx"]
    assert value(m, "mqhook_webhook_events_delivered_total", webhook="wh") == wh.success
    assert value(m, "mqhook_webhook_events_failed_total", webhook="wh") == wh.failed
    assert value(m, "mqhook_webhook_events_retried_total", webhook="wh") == wh.retried
    assert value(m, "mqhook_webhook_delivery_latency_seconds_count", webhook="wh") == wh.success
    assert value(m, "mqhook_webhook_delivery_latency_seconds_bucket", webhook="wh", le="0.1") == 0
    assert value(m, "mqhook_webhook_delivery_latency_seconds_bucket", webhook="wh", le="+Inf") == wh.success
    assert value(m, "mqhook_webhook_request_duration_seconds_count", webhook="wh") == wh.requests
    assert value(m, "mqhook_webhook_last_error_timestamp_seconds", webhook="wh") > 0


def test_batched_delivery_latency_counts_every_event_once() -> None:
    async def body() -> Webhook:
        rx = await Receiver().start()
        wh = _webhook(rx.url(), batch_size=10)
        for i in range(25):  # queued before start: batches of 10, 10, 5
            put(wh, Event(clientid=f"c{i}"))
        wh.start()
        await _until(lambda: wh.success == 25)
        await wh.close(1.0)
        await rx.stop()
        return wh

    wh = asyncio.run(body())
    assert wh.batch_events.count == 3 and wh.batch_events.sum == 25
    assert wh.batch_events.counts[wh.batch_events.bounds.index(5.0)] == 1
    assert wh.batch_events.counts[wh.batch_events.bounds.index(10.0)] == 2
    assert wh.delivery_seconds.count == 25


def test_connection_errors_and_timeouts_are_told_apart() -> None:
    async def body() -> tuple[Webhook, Webhook]:
        refused = _webhook(f"http://127.0.0.1:{kit.free_port()}/", name="refused", max_retries=0)
        rx = await Receiver(lambda n: (200, 2.0)).start()
        slow = _webhook(rx.url(), name="slow", max_retries=0, request_timeout="200ms")
        for wh in (refused, slow):
            wh.start()
            put(wh, Event(clientid="c"))
        await _until(lambda: refused.dropped["retries_exhausted"] == 1 and slow.dropped["retries_exhausted"] == 1)
        for wh in (refused, slow):
            await wh.close(1.0)
        await rx.stop()
        return refused, slow

    refused, slow = asyncio.run(body())
    assert refused.outcomes["connection_error"] == 1 and sum(refused.outcomes.values()) == 1
    assert slow.outcomes["timeout"] == 1 and sum(slow.outcomes.values()) == 1
    assert slow.request_seconds.sum >= 0.19
    assert refused.delivery_seconds.count == slow.delivery_seconds.count == 0


# -- parts ------------------------------------------------------------------------------------------


def test_histogram_buckets_follow_prometheus_le() -> None:
    h = Histogram((0.1, 1.0))
    for v, n in ((0.05, 1), (0.1, 2), (0.5, 1), (1.0, 1), (7.0, 3)):
        h.observe(v, n)
    assert h.counts == [3, 2, 3]  # le=0.1 includes 0.1; the last bucket is +Inf
    assert h.count == 8
    assert math.isclose(h.sum, 0.05 + 0.2 + 0.5 + 1.0 + 21.0)


def test_created_ms_reads_the_events_own_timestamp() -> None:
    enc = msgspec.json.Encoder()
    ev = Event(clientid="c", payload='{"timestamp":1}', timestamp=1700000000123)
    assert created_ms(enc.encode(ev)) == 1700000000123
    # A nested map with a "timestamp" key holds strings; the top-level number is the one read.
    raw = b'{"event":"message.publish","pub_props":{"User-Property":{"timestamp":"5"}},"timestamp":42}'
    assert created_ms(raw) == 42
    raw = b'{"timestamp":7,"pub_props":{"User-Property":{"timestamp":"5"}}}'
    assert created_ms(raw) == 7
    big = Event(clientid="c", payload="p" * 1_000_000, timestamp=99)
    assert created_ms(enc.encode(big)) == 99
    assert created_ms(b'{"event":"x"}') is None


def test_loop_lag_sees_a_blocked_loop() -> None:
    async def body() -> LoopLag:
        lag = LoopLag(interval=0.05)
        lag.start(asyncio.get_running_loop())
        await _until(lambda: len(lag._recent) >= 1)  # sampling has begun
        before = len(lag._recent)
        time.sleep(0.3)  # the behaviour under test: block the loop; the pending timer runs ~0.25-0.3 s late
        await _until(lambda: len(lag._recent) >= before + 2)  # the late sample, and one after it
        lag.stop()
        return lag

    lag = asyncio.run(body())
    assert lag.max >= 0.2
    assert lag.last < 0.2  # the samples after the block are on time again
