"""Webhook delivery end to end: batching, payload encoding, templates, signing, retries,
backpressure, per-client ordering, overflow and the /api/v1/stats counters."""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from .rawmqtt import PUBACK, Closed, RawClient, publish_packet
from .receiver import (
    Receivers,
    dropped_total,
    standard_webhooks_signature,
    start_broker,
    wait_drained,
    webhook_stats,
)
from .util import wait_until

STATS_KEYS = {"matched", "success", "failed", "retried", "dropped", "queuing", "inflight", "last_error"}


@pytest.fixture
def rx():
    yield from Receivers.fixture()


def only_publish(uid: str, **opts: Any) -> dict[str, Any]:
    """Webhook options selecting message.publish on this test's topics only."""
    return {"events": ["message.publish"], "topics": [f"{uid}/#"], **opts}


def burst(
    raw: Any, b: Any, client_id: str, topic: str, n: int, payload: Callable[[int], bytes] = lambda i: b"%d" % i
) -> RawClient:
    """Publish ``n`` QoS 0 messages in one write, then PINGREQ/PINGRESP: the broker has read them all."""
    c = raw(b)
    assert c.connect(client_id).rc == 0
    c.send(b"".join(publish_packet(topic, payload(i)) for i in range(n)))
    c.ping()
    return c


def ok_bodies(r: Any) -> list[Any]:
    return [q for q in r.requests() if q.ok]


# ---------------------------------------------------------------------------- batching
def test_batches_are_json_arrays_and_nothing_is_lost(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, name="batch", batch_size=100, batch_time="200ms", **only_publish(uid))
    burst(raw, b, uid, f"{uid}/t", 250)
    r.wait_for(lambda: len(r.events("message.publish")) >= 250, 10, "250 message.publish events")
    r.wait_quiet(0.3)
    reqs = r.requests()
    for q in reqs:
        assert isinstance(q.json, list), f"batch_size > 1 sends JSON arrays, got {q.body[:100]!r}"
        assert 1 <= len(q.json) <= 100, len(q.json)
        assert q.headers.get("content-type", "").startswith("application/json")
    assert len(reqs) >= 3
    assert max(len(q.json) for q in reqs) > 1, "a 250-message burst with batch_time 200ms was never batched"
    events = r.events("message.publish")
    assert sorted(int(e["payload"]) for e in events) == list(range(250)), "each event exactly once"
    assert all(e["metadata"] == {"rule_id": "batch_WH_D"} for e in events)
    s = wait_drained(b, "batch", matched=250)
    assert (s["matched"], s["success"], s["failed"], dropped_total(s)) == (250, 250, 0, 0)


# ---------------------------------------------------------------------------- payload encoding
def test_base64_payload_keeps_binary(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, payload_encoding="base64", **only_publish(uid))
    c = raw(b)
    assert c.connect(uid).rc == 0
    data = bytes(range(256))
    c.publish(f"{uid}/bin", data, qos=1)
    c.publish(f"{uid}/text", "héllo ✓".encode(), qos=1)
    ev = r.wait_event("message.publish", topic=f"{uid}/bin")
    assert base64.b64decode(ev["payload"], validate=True) == data
    ev = r.wait_event("message.publish", topic=f"{uid}/text")
    assert base64.b64decode(ev["payload"], validate=True) == "héllo ✓".encode()


def test_plain_payload_is_the_utf8_string(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, payload_encoding="plain", **only_publish(uid))
    c = raw(b)
    assert c.connect(uid).rc == 0
    c.publish(f"{uid}/text", "héllo ✓".encode(), qos=1)
    assert r.wait_event("message.publish", topic=f"{uid}/text")["payload"] == "héllo ✓"


# ---------------------------------------------------------------------------- templates, method
def test_template_body_stays_valid_json(rx, broker, raw, uid):
    r = rx()
    body = '{"c": ${json:clientid}, "p": ${json:payload}, "t": ${json:topic}, "q": ${qos}, "raw": "${clientid}"}'
    b = start_broker(broker, r, body=body, headers={"content-type": "application/json"}, **only_publish(uid))
    c = raw(b)
    assert c.connect(uid).rc == 0
    payload = 'he said "hi" \\ then\nleft {"x": 1}'
    c.publish(f"{uid}/t", payload.encode(), qos=1)
    (req,) = r.wait_for(lambda: ok_bodies(r), what="one templated request")
    assert json.loads(req.body) == {"c": uid, "p": payload, "t": f"{uid}/t", "q": 1, "raw": uid}


def test_header_templates(rx, broker, raw, uid):
    r = rx()
    headers = {"content-type": "application/json", "x-client": "${clientid}", "x-topic": "${topic}"}
    b = start_broker(broker, r, headers=headers, **only_publish(uid))
    c = raw(b)
    assert c.connect(uid).rc == 0
    c.publish(f"{uid}/h", b"x", qos=1)
    (req,) = r.wait_for(lambda: ok_bodies(r), what="one request")
    assert req.headers["x-client"] == uid
    assert req.headers["x-topic"] == f"{uid}/h"
    assert req.headers["content-type"].startswith("application/json")
    assert req.json["clientid"] == uid


def test_url_path_template(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, path="/hooks/${clientid}", **only_publish(uid))
    for cid in (f"{uid}-a", f"{uid}-b"):
        c = raw(b)
        assert c.connect(cid).rc == 0
        c.publish(f"{uid}/{cid}", b"x", qos=1)
    r.wait_events("message.publish", 2)
    paths = sorted(q.path for q in ok_bodies(r))
    assert paths == [f"/hooks/{uid}-a", f"/hooks/{uid}-b"]
    for q in ok_bodies(r):
        assert q.path == f"/hooks/{q.json['clientid']}"


def test_method_put(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, method="put", **only_publish(uid))
    c = raw(b)
    assert c.connect(uid).rc == 0
    c.publish(f"{uid}/m", b"x", qos=1)
    (req,) = r.wait_for(lambda: ok_bodies(r), what="one request")
    assert req.method == "PUT"
    assert req.json["event"] == "message.publish"


# ---------------------------------------------------------------------------- signing
def test_standard_webhooks_signature_known_answer():
    """The example of the Standard Webhooks spec, so the verifier below is itself checked."""
    sig = standard_webhooks_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}'
    )
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_requests_are_signed(rx, broker, raw, uid):
    r = rx()
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    b = start_broker(broker, r, secret=secret, **only_publish(uid))
    c = raw(b)
    assert c.connect(uid).rc == 0
    for i in range(3):
        c.publish(f"{uid}/s", b"%d" % i, qos=1)
    r.wait_events("message.publish", 3)
    reqs = ok_bodies(r)
    ids = []
    for q in reqs:
        msg_id, ts, sigs = q.headers["webhook-id"], q.headers["webhook-timestamp"], q.headers["webhook-signature"]
        assert msg_id and ts.isdigit() and abs(int(ts) - time.time()) < 60, (msg_id, ts)
        candidates = sigs.split()
        assert standard_webhooks_signature(secret, msg_id, ts, q.body) in candidates, (sigs, q.body[:100])
        assert standard_webhooks_signature(secret, msg_id, ts, q.body + b" ") not in candidates
        ids.append(msg_id)
    assert len(set(ids)) == len(reqs) == 3, "webhook-id identifies one message"


# ---------------------------------------------------------------------------- retries and failures
@pytest.mark.slow
def test_503_with_retry_after_is_retried(rx, broker, raw, uid):
    r = rx(statuses=[(503, {"Retry-After": "1"}), (503, {"Retry-After": "1"})])
    b = start_broker(
        broker, r, name="retry", max_retries=2, retry_backoff="50ms", retry_on=[429, "5xx"], **only_publish(uid)
    )
    c = raw(b)
    assert c.connect(uid).rc == 0
    c.publish(f"{uid}/r", b"again", qos=1)
    ev = r.wait_event("message.publish", timeout=10, topic=f"{uid}/r")
    assert ev["payload"] == "again"
    reqs = r.requests()
    assert [q.status for q in reqs] == [503, 503, 200]
    assert all(q.json == reqs[0].json for q in reqs), "a retry sends the same event"
    for prev, nxt in itertools.pairwise(reqs):
        assert prev.done is not None
        assert nxt.arrived - prev.done >= 0.9, "Retry-After: 1 must be honoured"
    s = wait_drained(b, "retry", matched=1)
    assert (s["matched"], s["success"], s["failed"]) == (1, 1, 0)
    assert s["retried"] >= 2


def test_400_fails_without_retry(rx, broker, raw, uid):
    r = rx(statuses=[400])
    b = start_broker(broker, r, name="bad", max_retries=2, retry_backoff="50ms", **only_publish(uid))
    c = raw(b)
    assert c.connect(uid).rc == 0
    c.publish(f"{uid}/f", b"refused", qos=1)
    wait_drained(b, "bad", matched=1)
    r.wait_quiet(0.5)  # a wrong retry would come after 50 ms
    assert [q.status for q in r.requests()] == [400]
    s = wait_drained(b, "bad", matched=1)
    assert (s["matched"], s["success"], s["failed"], s["retried"]) == (1, 0, 1, 0)
    assert isinstance(s["last_error"], str) and s["last_error"], s
    assert "400" in s["last_error"] or "bad request" in s["last_error"].lower(), s["last_error"]


def test_retries_are_bounded_by_max_retries(rx, broker, raw, uid):
    r = rx(default_status=503)
    b = start_broker(
        broker, r, name="down", max_retries=2, retry_backoff="50ms", retry_backoff_max="100ms", **only_publish(uid)
    )
    c = raw(b)
    assert c.connect(uid).rc == 0
    c.publish(f"{uid}/d", b"never", qos=1)
    s = wait_drained(b, "down", matched=1, timeout=10)
    r.wait_quiet(0.5)
    assert [q.status for q in r.requests()] == [503, 503, 503], "one attempt + max_retries 2"
    assert s["success"] == 0
    # given up: counted once, as failed or as a drop (the contract does not say which)
    assert s["failed"] + dropped_total(s) == 1, s
    assert s["retried"] >= 2


# ---------------------------------------------------------------------------- backpressure
class WindowedPublisher(threading.Thread):
    """Publishes ``n`` QoS 1 messages on a raw socket keeping at most ``window`` unacknowledged;
    ``acked`` counts PUBACKs. A broker that stops reading the socket stops the PUBACKs."""

    def __init__(self, b: Any, client_id: str, topic: str, n: int, window: int = 20) -> None:
        super().__init__(name=f"publisher-{client_id}", daemon=True)
        self.b, self.client_id, self.topic, self.n, self.window = b, client_id, topic, n, window
        self.acked = 0
        self.error: BaseException | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            with RawClient(self.b.host, self.b.mqtt_port, version=5) as c:
                assert c.connect(self.client_id).rc == 0
                sent = 0
                while self.acked < self.n and not self.stop_event.is_set():
                    while sent < self.n and sent - self.acked < self.window:
                        c.send(publish_packet(self.topic, b"%d" % sent, qos=1, pid=sent + 1))
                        sent += 1
                    try:
                        p = c.recv(0.1)
                    except TimeoutError:
                        continue
                    if p.type == PUBACK:
                        self.acked += 1
                c.disconnect()
        except (Closed, OSError, AssertionError) as exc:
            self.error = exc


def wait_stalled(pub: WindowedPublisher, quiet: float = 1.0, timeout: float = 15.0) -> int:
    """Wait (bounded) until the PUBACK count stops moving for ``quiet`` seconds; returns it."""
    deadline = time.monotonic() + timeout
    last, since = pub.acked, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)  # polling a counter; no event to wait on
        if pub.error is not None or pub.acked >= pub.n:
            break
        if pub.acked != last:
            last, since = pub.acked, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
    raise AssertionError(f"publisher never stalled: acked {pub.acked}/{pub.n}, error {pub.error!r}")


@pytest.mark.slow
def test_backpressure_stalls_the_publisher_and_loses_nothing(rx, broker, uid):
    gate = threading.Event()
    r = rx(gate=gate)
    b = start_broker(
        broker,
        r,
        name="bp",
        overflow="backpressure",
        max_queued_events=50,
        inflight_window=4,
        request_timeout="30s",
        **only_publish(uid),
    )
    n = 500
    pub = WindowedPublisher(b, f"{uid}-pub", f"{uid}/t", n)
    pub.start()
    try:
        stalled = wait_stalled(pub)
        assert stalled < n
        held = r.requests()
        assert 1 <= len(held) <= 4, f"inflight_window 4, yet {len(held)} requests held"
        s = webhook_stats(b, "bp")
        assert dropped_total(s) == 0, s
    finally:
        gate.set()
        pub.join(30)
        pub.stop_event.set()
    assert pub.error is None, pub.error
    assert pub.acked == n, f"publisher acked {pub.acked}/{n} after the gate opened"
    r.wait_for(lambda: len(r.events("message.publish")) >= n, 30, f"{n} message.publish events")
    payloads = sorted(int(e["payload"]) for e in r.events("message.publish"))
    assert set(payloads) == set(range(n)), f"lost: {sorted(set(range(n)) - set(payloads))[:20]}"
    s = wait_drained(b, "bp", matched=n, timeout=10)
    assert all(v == 0 for v in s["dropped"].values()), s["dropped"]
    assert s["matched"] == s["success"] == n


def test_backpressure_holds_only_the_publishers_feeding_it_and_serves_their_keepalive(rx, broker, raw, uid):
    """Issue 10, defect 1: one saturated backpressure webhook must not stop the whole broker."""
    gate = threading.Event()
    r = rx(gate=gate)  # the receiver holds every request until the gate opens
    b = start_broker(
        broker,
        r,
        name="bp",
        overflow="backpressure",
        max_queued_events=20,
        inflight_window=1,
        request_timeout="30s",
        events=["message.publish"],
        topics=[f"{uid}/load/#"],
    )
    try:
        loader = raw(b, version=5)
        assert loader.connect(f"{uid}-loader", keepalive=5).rc == 0
        for i in range(40):  # QoS 0 into the webhook: past its high water (16 of 20)
            loader.send(publish_packet(f"{uid}/load/t", b"%d" % i, version=5))
        assert wait_until(lambda: b.stat("paused_backpressure") == 1, 10)
        assert webhook_stats(b, "bp")["saturated"] is True
        loader.send(b"\xc0\x00")  # PINGREQ from the held publisher: still answered
        assert loader.recv(5).type == 13
        other = raw(b, version=5)  # a client whose messages do not feed the webhook is served at once
        assert other.connect(f"{uid}-other").rc == 0
        assert other.subscribe(f"{uid}/other/#", qos=1) == [1]
        other.send(publish_packet(f"{uid}/other/x", b"hello", qos=1, pid=1, version=5))
        got = {other.recv(5).type, other.recv(5).type}
        assert got == {PUBACK, 3}  # its PUBACK and its own message
        assert b.stat("paused_backpressure") == 1
    finally:
        gate.set()
    r.wait_for(lambda: len(r.events("message.publish")) >= 40, 30, "40 message.publish events")
    assert wait_until(lambda: b.stat("paused_backpressure") == 0, 10)
    s = wait_drained(b, "bp", matched=40, timeout=10)
    assert dropped_total(s) == 0 and s["success"] == 40


# ---------------------------------------------------------------------------- ordering
def test_per_client_ordering(rx, broker, raw, uid):
    rng = random.Random(20240914)
    r = rx(delay=lambda _req: rng.uniform(0.0, 0.02))
    b = start_broker(broker, r, name="ord", ordering="per_client", inflight_window=8, pool_size=8, **only_publish(uid))
    n = 30
    ids = [f"{uid}-c{i}" for i in range(4)]
    for cid in ids:
        burst(raw, b, cid, f"{uid}/{cid}", n)
    r.wait_for(lambda: len(r.events("message.publish")) >= 4 * n, 15, f"{4 * n} events")
    r.wait_quiet(0.3)
    for cid in ids:
        arrived = [int(e["payload"]) for q in r.requests() for e in q.events if e["clientid"] == cid]
        answered = [int(e["payload"]) for q in r.completed() for e in q.events if e["clientid"] == cid]
        assert arrived == list(range(n)), f"{cid}: arrival order {arrived}"
        assert answered == list(range(n)), f"{cid}: completion order {answered}"


# ---------------------------------------------------------------------------- overflow and stats
@pytest.mark.parametrize("policy", ["drop_new", "drop_oldest"])
def test_overflow_policy_and_counters(rx, broker, raw, uid, policy):
    gate = threading.Event()
    r = rx(gate=gate)
    b = start_broker(
        broker, r, name="ovf", overflow=policy, max_queued_events=10, inflight_window=1, **only_publish(uid)
    )
    try:
        burst(raw, b, uid, f"{uid}/t", 100)
        assert wait_until(lambda: webhook_stats(b, "ovf")["matched"] >= 100, timeout=5)
        s = webhook_stats(b, "ovf")
        assert set(s) >= STATS_KEYS, sorted(s)
        assert isinstance(s["dropped"], dict) and all(isinstance(v, int) for v in s["dropped"].values())
        assert dropped_total(s) > 0, s
        assert s["queuing"] <= 10, s
    finally:
        gate.set()
    s = wait_drained(b, "ovf", matched=100)
    got = {e["payload"] for e in r.events("message.publish")}
    assert s["matched"] == 100
    assert s["failed"] == 0
    assert s["success"] == len(got), (s, len(got))
    assert s["success"] + dropped_total(s) == 100
    assert len(got) <= 20, f"max_queued_events 10 but {len(got)} delivered"
    if policy == "drop_new":
        assert "99" not in got, "drop_new keeps the oldest events"
    else:
        assert "99" in got and "50" not in got, "drop_oldest keeps the newest events"


def test_stats_balance_with_mixed_outcomes(rx, broker, raw, uid):
    r = rx(statuses=[200, 400, 200, 400, 200])
    b = start_broker(broker, r, name="mix", inflight_window=1, **only_publish(uid))
    c = raw(b)
    assert c.connect(uid).rc == 0
    for i in range(5):
        c.publish(f"{uid}/x", b"%d" % i, qos=1)
    s = wait_drained(b, "mix", matched=5)
    assert set(s) >= STATS_KEYS
    assert (s["matched"], s["success"], s["failed"], dropped_total(s)) == (5, 3, 2, 0)
    assert (s["queuing"], s["inflight"]) == (0, 0)
    assert isinstance(s["last_error"], str) and s["last_error"]
