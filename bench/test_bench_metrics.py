"""What one Prometheus scrape costs the broker's loop: a full collect of the registry.

Run: ``.venv/bin/pytest bench/test_bench_metrics.py -q -p no:cacheprovider --benchmark-columns=min,median,ops``

The registry is the one ``mqhook run`` serves (``metrics.build_registry``) with 10 webhooks whose
counters and histograms are non-zero, so every series is formatted with real numbers:

- ``scrape``: ``generate_latest`` of the whole registry (mqhook collector + process collector),
  i.e. the work of one ``GET /metrics`` minus HTTP;
- ``collect_only``: the same without the process collector (which reads ``/proc``);
- ``observe``: one ``Histogram.observe`` (what a webhook request adds per histogram).

At one scrape per second, the scrape figure divided by 1 s is the share of the loop it takes.
``bench/e2e_metrics.py`` measures the same end to end against broker throughput.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import generate_latest

from mqhook.broker.broker import Broker
from mqhook.broker.settings import MqttConfig
from mqhook.broker.stats import Stats
from mqhook.metrics import LoopLag, build_registry
from mqhook.webhook.counters import REQUEST_SECONDS_BUCKETS, Histogram
from mqhook.webhook.model import parse_webhook
from mqhook.webhook.webhook import Webhook

N_WEBHOOKS = 10


class _Clock:
    def time(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        raise AssertionError("no timers in this benchmark")


def _webhooks() -> list[Webhook]:
    hooks = []
    for i in range(N_WEBHOOKS):
        wh = Webhook(parse_webhook({"name": f"hook-{i}", "url": "http://127.0.0.1:9/"}, "$"))
        wh.matched, wh.success, wh.failed, wh.retried = 10_000 * i, 9_000 * i, 10 * i, 50 * i
        wh.dropped["queue_full"] = i
        for n, outcome in enumerate(wh.outcomes):
            wh.outcomes[outcome] = 100 * n + i
        for k in range(200):
            wh.request_seconds.observe(0.0005 * k)
            wh.batch_events.observe(1 + k % 120)
            wh.delivery_seconds.observe(0.002 * k, 3)
        hooks.append(wh)
    return hooks


def _broker() -> Broker:
    stats = Stats()
    stats.bytes_received, stats.bytes_sent = 123_456_789, 987_654_321
    stats.packets_received[3] = stats.messages_received[0] = 1_000_000
    stats.count_disconnect("tcp_closed")
    return Broker(MqttConfig(), stats, _Clock())


def test_scrape(benchmark: Any) -> None:
    registry = build_registry(_broker(), _webhooks(), LoopLag())
    body = benchmark(generate_latest, registry)
    assert b'mqhook_webhook_requests_total{outcome="5xx",webhook="hook-9"}' in body
    assert b"process_open_fds" in body


def test_collect_only(benchmark: Any) -> None:
    registry = build_registry(_broker(), _webhooks(), LoopLag(), process=False)
    body = benchmark(generate_latest, registry)
    assert b"process_open_fds" not in body and len(body.splitlines()) > 500


def test_observe(benchmark: Any) -> None:
    h = Histogram(REQUEST_SECONDS_BUCKETS)
    benchmark(h.observe, 0.042)
    assert h.count > 0
