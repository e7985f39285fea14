"""Changes over the API apply at once, without a restart (docs/api.md, Webhooks, last paragraph):
a new webhook gets the next event, a changed one its new URL with its queue and counters kept,
a deleted one stops."""

from __future__ import annotations

import threading
from typing import Any

from conftest import Broker, wait_until

from .helpers import (
    closed_url,
    create,
    delete_quietly,
    get_item,
    hook,
    publish_n,
    wait_metrics,
    wh_metrics,
)


def test_created_changed_deleted_apply_at_once(
    default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any
) -> None:
    b = default_broker
    a, c = receivers(), receivers()
    pub = mqtt_clients(b, f"{nid}-pub")
    # before it exists: nothing goes anywhere
    pub.publish(f"{nid}/t", b"too-early", qos=1)

    create(b, hook(nid, a.url("/a"), nid))
    try:
        assert nid in b.stats()["webhooks"], "a created webhook is not in /api/v1/stats"
        pub.publish(f"{nid}/t", b"first", qos=1)
        a.wait_event("message.publish", payload="first", topic=f"{nid}/t")
        assert not a.events("message.publish", ok_only=False, payload="too-early")

        cfg = get_item(b, nid)["config"]
        cfg["url"] = c.url("/c")
        status, item = b.api("PUT", f"/api/v1/webhooks/{nid}", cfg)
        assert status == 200, item
        pub.publish(f"{nid}/t", b"second", qos=1)
        c.wait_event("message.publish", payload="second")
        assert c.requests()[-1].path == "/c"
        assert not a.events("message.publish", ok_only=False, payload="second"), "the old URL got the event"
    finally:
        status, body = b.api("DELETE", f"/api/v1/webhooks/{nid}")
    assert status == 204, body
    assert nid not in b.stats()["webhooks"], "a deleted webhook is still in /api/v1/stats"
    n_a, n_c = len(a.requests()), len(c.requests())
    pub.publish(f"{nid}/t", b"third", qos=1)
    # a barrier: a second webhook on the same topic gets the message, so the router has seen it
    probe = receivers()
    create(b, hook(nid + "-probe", probe.url(), nid))
    try:
        pub.publish(f"{nid}/t", b"fourth", qos=1)
        probe.wait_event("message.publish", payload="fourth")
        a.wait_quiet(0.2)
        c.wait_quiet(0.2)
        assert len(a.requests()) == n_a and len(c.requests()) == n_c, "a deleted webhook still delivers"
    finally:
        delete_quietly(b, nid + "-probe")


def test_counters_survive_a_put(default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any) -> None:
    b = default_broker
    r = receivers()
    create(b, hook(nid, r.url(), nid))
    try:
        pub = mqtt_clients(b, f"{nid}-pub")
        publish_n(pub, f"{nid}/t", 3)
        wait_metrics(b, nid, lambda m: m["success"] >= 3, what="success 3")
        cfg = get_item(b, nid)["config"]
        cfg["description"] = "changed"
        cfg["headers"] = {**cfg["headers"], "x-changed": "1"}
        status, item = b.api("PUT", f"/api/v1/webhooks/{nid}", cfg)
        assert status == 200, item
        m = wh_metrics(b, nid)
        assert m["matched"] == 3 and m["success"] == 3, f"counters reset by a PUT: {m}"
        assert item["metrics"]["matched"] == 3, item["metrics"]
        publish_n(pub, f"{nid}/t", 2, prefix="after")
        m = wait_metrics(b, nid, lambda m: m["success"] >= 5, what="success 5")
        assert m["matched"] == 5, m
        assert r.requests()[-1].headers.get("x-changed") == "1"
        assert b.stats()["webhooks"][nid]["matched"] == 5
    finally:
        delete_quietly(b, nid)


def test_queued_events_survive_a_change(default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any) -> None:
    """Receiver down (a closed port), events queue behind the one in flight; a PUT that adds a header
    and points at a live receiver keeps them: they arrive there, with the new header."""
    b = default_broker
    live = receivers()
    opts = {
        "inflight_window": 1,
        "max_retries": 1000,
        "retry_backoff": "50ms",
        "retry_backoff_max": "100ms",
        "connect_timeout": "1s",
    }
    create(b, hook(nid, closed_url(), nid, **opts))
    try:
        pub = mqtt_clients(b, f"{nid}-pub")
        n = 6
        payloads = {p.decode() for p in publish_n(pub, f"{nid}/t", n, prefix="q")}
        m = wait_metrics(
            b, nid, lambda m: m["queuing"] + m["inflight_events"] == n and m["queuing"] >= n - 1, what="queued"
        )
        assert m["success"] == 0 and m["matched"] == n, m
        queued = m["queuing"]

        cfg = get_item(b, nid)["config"]
        cfg["url"] = live.url("/live")
        cfg["headers"] = {**cfg["headers"], "x-after-change": "yes"}
        status, item = b.api("PUT", f"/api/v1/webhooks/{nid}", cfg)
        assert status == 200, item
        assert item["metrics"]["matched"] == n, item["metrics"]

        evs = live.wait_events("message.publish", queued, timeout=10)
        got = [e["payload"] for e in evs]
        assert set(got) <= payloads, got
        assert len(set(got)) >= queued, f"{queued} queued events at the change, {len(set(got))} arrived: {got}"
        assert all(q.headers.get("x-after-change") == "yes" for q in live.requests()), "sent on the old settings"
        m = wh_metrics(b, nid)
        assert m["matched"] == n, m
        assert sum(m["dropped"].values()) == 0, f"queued events dropped by the change: {m}"
    finally:
        delete_quietly(b, nid)


def test_change_of_topics_applies_at_once(default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any) -> None:
    b = default_broker
    r = receivers()
    create(b, hook(nid, r.url(), None, events=["message.publish"], topics=[f"{nid}/a/#"]))
    try:
        pub = mqtt_clients(b, f"{nid}-pub")
        pub.publish(f"{nid}/a/1", b"a1", qos=1)
        r.wait_event("message.publish", payload="a1")
        cfg = get_item(b, nid)["config"]
        cfg["topics"] = [f"{nid}/b/#"]
        assert b.api("PUT", f"/api/v1/webhooks/{nid}", cfg)[0] == 200
        pub.publish(f"{nid}/a/1", b"a2", qos=1)
        pub.publish(f"{nid}/b/1", b"b1", qos=1)
        r.wait_event("message.publish", payload="b1")
        assert wait_until(lambda: wh_metrics(b, nid)["success"] >= 2)
        assert not r.events("message.publish", ok_only=False, payload="a2"), "old topic filter still applies"
    finally:
        delete_quietly(b, nid)


def test_smaller_queue_on_change_counts_queue_full(
    default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any
) -> None:
    """A changed webhook keeps its queued events as far as its new bounds allow; the rest are
    counted ``queue_full``; matched is kept."""
    b = default_broker
    opts = {"inflight_window": 1, "max_retries": 1000, "retry_backoff": "50ms", "retry_backoff_max": "100ms"}
    create(b, hook(nid, closed_url(), nid, **opts))
    try:
        pub = mqtt_clients(b, f"{nid}-pub")
        n = 8
        publish_n(pub, f"{nid}/t", n, prefix="q")
        m = wait_metrics(b, nid, lambda m: m["queuing"] == n - 1 and m["inflight_events"] == 1, what="7 queued")
        cfg = get_item(b, nid)["config"]
        cfg["max_queued_events"] = 3
        status, item = b.api("PUT", f"/api/v1/webhooks/{nid}", cfg)
        assert status == 200, item
        m = wh_metrics(b, nid)
        assert m["matched"] == n, m
        assert m["queuing"] <= 3, m
        # 7 queued, 3 kept (some may already be in flight on the new settings), 4 dropped
        assert m["dropped"].get("queue_full", 0) == n - 1 - 3, m
        assert m["queuing"] + m["inflight_events"] + sum(m["dropped"].values()) + m["success"] + m["failed"] == n, m
    finally:
        delete_quietly(b, nid)


def test_change_while_the_window_is_full_keeps_delivering(
    default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any
) -> None:
    """Receiver A stalls with the inflight window full and events queued; a PUT points the webhook
    at B. Once A answers the request it holds (finished on the old settings), the queued events and
    the next ones go to B."""
    b = default_broker
    gate = threading.Event()
    a, c = receivers(gate=gate), receivers()
    create(b, hook(nid, a.url("/a"), nid, inflight_window=1))
    try:
        pub = mqtt_clients(b, f"{nid}-pub")
        publish_n(pub, f"{nid}/t", 5, prefix="q")
        a.wait_for(lambda: len(a.requests()) == 1, what="the held request")
        wait_metrics(b, nid, lambda m: m["queuing"] == 4 and m["inflight"] == 1, what="4 queued, 1 in flight")
        cfg = get_item(b, nid)["config"]
        cfg["url"] = c.url("/c")
        assert b.api("PUT", f"/api/v1/webhooks/{nid}", cfg)[0] == 200
        gate.set()
        a.wait_for(lambda: a.requests()[0].status == 200, what="the held request answered")
        pub.publish(f"{nid}/t", b"new", qos=1)
        evs = c.wait_events("message.publish", 5)
        assert sorted(e["payload"] for e in evs) == ["new", "q-1", "q-2", "q-3", "q-4"], evs
        assert len(a.requests()) == 1
        m = wait_metrics(b, nid, lambda m: m["success"] == 6, what="success 6")
        assert m["matched"] == 6 and m["queuing"] == 0, m
    finally:
        gate.set()
        delete_quietly(b, nid)
