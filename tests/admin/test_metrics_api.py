"""A webhook's METRICS and DELIVERY log over the API (docs/api.md, Webhooks), checked against a
real receiver and the Prometheus /metrics counters."""

from __future__ import annotations

import time
from typing import Any

from conftest import Broker

from .helpers import (
    DELIVERY_KEYS,
    METRICS_KEYS,
    OUTCOMES,
    closed_url,
    create,
    delete_quietly,
    deliveries,
    hook,
    prom_value,
    publish_n,
    wait_metrics,
    wh_metrics,
)

DELIVERED = "mqhook_webhook_events_delivered_total"


def test_metrics_count_deliveries_and_reset_keeps_prometheus_monotonic(
    default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any
) -> None:
    b = default_broker
    r = receivers()
    create(b, hook(nid, r.url(), nid))
    try:
        m = wh_metrics(b, nid)
        assert set(m) >= METRICS_KEYS, sorted(METRICS_KEYS - set(m))
        assert m["matched"] == 0 and m["success"] == 0 and m["reset_at"] is None, m
        assert isinstance(m["dropped"], dict), m

        n = 7
        pub = mqtt_clients(b, f"{nid}-pub")
        publish_n(pub, f"{nid}/t", n)
        r.wait_events("message.publish", n)
        m = wait_metrics(b, nid, lambda m: m["success"] >= n and m["inflight"] == 0, what=f"success {n}")
        assert m["success"] == n and m["matched"] == n and m["failed"] == 0, m
        assert m["requests"] == n and m["queuing"] == 0 and m["inflight_events"] == 0, m
        # "rate": events matched per second over the last 10 s (allowing a sampling period's lag)
        wait_metrics(b, nid, lambda m: m["rate"] > 0 and m["rate_success"] > 0, timeout=3, what="rate > 0")
        # the same counters as /api/v1/stats webhooks.NAME
        stats = b.stats()["webhooks"][nid]
        assert stats["success"] == n and stats["matched"] == n, stats
        prom_before = prom_value(b, DELIVERED, webhook=nid)
        assert prom_before == n, prom_before

        t0 = time.time()
        status, body = b.api("POST", f"/api/v1/webhooks/{nid}/metrics/reset")
        assert status == 204, body
        m = wh_metrics(b, nid)
        assert m["success"] == 0 and m["matched"] == 0 and m["requests"] == 0, m
        assert isinstance(m["reset_at"], int | float) and t0 - 1 <= m["reset_at"] <= time.time() + 1, m
        assert prom_value(b, DELIVERED, webhook=nid) >= prom_before, "a Prometheus counter went down"

        publish_n(pub, f"{nid}/t", 2, prefix="after")
        m = wait_metrics(b, nid, lambda m: m["success"] >= 2, what="counted again after reset")
        assert m["success"] == 2 and m["matched"] == 2, m
        assert prom_value(b, DELIVERED, webhook=nid) == n + 2
    finally:
        delete_quietly(b, nid)


def test_deliveries_newest_first(default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any) -> None:
    b = default_broker
    r = receivers()
    create(b, hook(nid, r.url(), nid))
    try:
        assert deliveries(b, nid) == []
        pub = mqtt_clients(b, f"{nid}-pub")
        t0 = time.time()
        publish_n(pub, f"{nid}/t", 4)
        wait_metrics(b, nid, lambda m: m["success"] >= 4, what="success 4")
        log = deliveries(b, nid)
        assert len(log) == 4, log
        for d in log:
            assert set(d) == DELIVERY_KEYS, d
            assert d["outcome"] == "2xx" and d["status"] == 200 and d["error"] is None, d
            assert d["attempt"] == 0 and d["events"] == 1, d
            assert isinstance(d["latency_ms"], int | float) and d["latency_ms"] >= 0, d
            assert t0 - 1 <= d["at"] <= time.time() + 1, d
        ats = [d["at"] for d in log]
        assert ats == sorted(ats, reverse=True), f"not newest first: {ats}"
    finally:
        delete_quietly(b, nid)


def test_deliveries_keep_at_most_100(default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any) -> None:
    b = default_broker
    r = receivers()
    create(b, hook(nid, r.url(), nid))
    try:
        pub = mqtt_clients(b, f"{nid}-pub")
        n = 130
        for i in range(n):
            pub.publish(f"{nid}/t", b"%d" % i, qos=0, wait=False)
        pub.publish(f"{nid}/t", b"last", qos=1)
        wait_metrics(b, nid, lambda m: m["success"] >= n + 1, timeout=15, what=f"success {n + 1}")
        log = deliveries(b, nid)
        assert len(log) == 100, len(log)
        ats = [d["at"] for d in log]
        assert ats == sorted(ats, reverse=True)
    finally:
        delete_quietly(b, nid)


def test_failing_receiver_shows_5xx_and_retries(
    default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any
) -> None:
    b = default_broker
    r = receivers(default_status=500)
    opts = {"max_retries": 2, "retry_backoff": "10ms", "retry_backoff_max": "20ms"}
    create(b, hook(nid, r.url(), nid, **opts))
    try:
        pub = mqtt_clients(b, f"{nid}-pub")
        pub.publish(f"{nid}/t", b"doomed", qos=1)
        m = wait_metrics(b, nid, lambda m: m["requests"] >= 3 and m["inflight"] == 0, what="3 attempts done")
        assert m["success"] == 0 and m["retried"] == 2, m
        assert m["last_error"], m
        assert isinstance(m["last_error_at"], int | float), m
        log = deliveries(b, nid)
        assert len(log) == 3, log
        assert all(d["outcome"] == "5xx" and d["status"] == 500 for d in log), log
        assert [d["attempt"] for d in log] == [2, 1, 0], f"attempts newest first: {log}"
        assert all(d["outcome"] in OUTCOMES for d in log)
        assert len(r.requests()) == 3
        assert get_status(b, nid) in ("failing", "running")
    finally:
        delete_quietly(b, nid)


def test_connection_errors_are_logged(default_broker: Broker, nid: str, mqtt_clients: Any) -> None:
    b = default_broker
    create(b, hook(nid, closed_url(), nid, max_retries=0))
    try:
        pub = mqtt_clients(b, f"{nid}-pub")
        pub.publish(f"{nid}/t", b"nowhere", qos=1)
        wait_metrics(b, nid, lambda m: m["requests"] >= 1 and m["inflight"] == 0, what="1 attempt")
        log = deliveries(b, nid)
        assert len(log) == 1 and log[0]["outcome"] == "connection_error", log
        assert log[0]["status"] is None and log[0]["error"], log
        assert get_status(b, nid) in ("failing", "running")
    finally:
        delete_quietly(b, nid)


def get_status(b: Broker, name: str) -> str:
    return b.api("GET", f"/api/v1/webhooks/{name}")[1]["status"]


def test_delivery_latency_has_sub_ms_precision(
    default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any
) -> None:
    """DELIVERY latency_ms (the doc's example: 3.1) of a local receiver: > 0 and not whole
    milliseconds only (what a 1 ms clock gives)."""
    b = default_broker
    r = receivers()
    create(b, hook(nid, r.url(), nid))
    try:
        pub = mqtt_clients(b, f"{nid}-pub")
        publish_n(pub, f"{nid}/t", 4)
        wait_metrics(b, nid, lambda m: m["success"] >= 4, what="success 4")
        lat = [d["latency_ms"] for d in deliveries(b, nid)]
        assert all(x > 0 for x in lat), f"latency_ms of real requests: {lat}"
        assert any(abs(x - round(x)) > 1e-6 for x in lat), f"latency_ms in whole milliseconds only: {lat}"
    finally:
        delete_quietly(b, nid)
