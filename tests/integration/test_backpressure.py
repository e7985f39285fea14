"""A subscriber that never reads must not make the broker grow without bound or stall others."""

from __future__ import annotations

import threading
import time

import pytest

from .rawmqtt import PUBACK, RawClient, connect_packet, publish_packet
from .util import wait_until

N_MESSAGES = 20_000
PAYLOAD = b"p" * 1024
RSS_GROWTH_LIMIT_KB = 60 * 1024


class RssSampler(threading.Thread):
    """Samples the broker's VmRSS every 50 ms; ``peak`` is the highest value seen."""

    def __init__(self, broker) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.broker = broker
        self.peak = broker.rss_kb()
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.05):
            try:
                self.peak = max(self.peak, self.broker.rss_kb())
            except (OSError, RuntimeError):
                return

    def stop(self) -> int:
        self.stop_event.set()
        self.join(2)
        return self.peak


def stuck_subscriber(broker, client_id: str, topic_filter: str, qos: int, version: int = 4) -> RawClient:
    """Subscribes, reads the SUBACK, then never reads again (tiny receive buffer)."""
    c = RawClient(broker.host, broker.mqtt_port, version=version, rcvbuf=4096)
    c.send(connect_packet(client_id, version=version, clean=True, keepalive=0))
    c.expect(2)
    assert c.subscribe(topic_filter, qos=qos) == [qos]
    return c


def wait_quiet(client, quiet: float = 0.5, timeout: float = 30.0) -> None:
    """Wait (bounded) until ``client`` has received nothing new for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(client.received())
        with client.cond:
            client.cond.wait_for(lambda n=n: len(client.messages) > n, quiet)
        if len(client.received()) == n:
            return
    pytest.fail(f"subscriber still receiving after {timeout}s")


def dropped(b) -> int:
    s = b.stats()["deliveries_dropped"]
    return s["qos0_msg"] + s["queue_full"]


def flood(broker, client_id: str, topic: str, n: int, deadline: float, qos: int = 0) -> None:
    """Publishes on a raw socket as fast as the broker takes them (bounded by ``deadline``).
    QoS 1 goes in batches of 20 (under the default Receive-Maximum of 32), each batch acked."""
    pub = RawClient(broker.host, broker.mqtt_port, version=5, timeout=max(1.0, deadline - time.monotonic()))
    try:
        assert pub.connect(client_id).rc == 0
        size = 100 if qos == 0 else 20
        batch = b"".join(publish_packet(topic, PAYLOAD, qos=qos, pid=i + 1) for i in range(size))
        for _ in range(n // size):
            if time.monotonic() > deadline:
                pytest.fail("the broker stopped reading from the publisher (stalled by a slow subscriber?)")
            pub.send(batch)
            for _ in range(size if qos else 0):
                pub.expect(PUBACK, timeout=max(0.1, deadline - time.monotonic()))
        pub.ping(timeout=max(1.0, deadline - time.monotonic()))  # everything before it was read
    finally:
        pub.close()


@pytest.mark.slow
def test_qos0_slow_subscriber_bounded_memory(broker, clients, uid):
    b = broker()
    stuck = stuck_subscriber(b, uid + "-stuck", "bp/#", qos=0)
    healthy = clients(b, uid + "-healthy")
    healthy.subscribe("bp/#", qos=0)
    base = b.rss_kb()
    sampler = RssSampler(b)
    sampler.start()
    try:
        flood(b, uid + "-pub", "bp/data", N_MESSAGES, deadline=time.monotonic() + 60)
        healthy.wait_messages(1, timeout=10)
        wait_quiet(healthy)
        # once drained, the healthy subscriber still gets new messages promptly
        healthy.publish("bp/end", b"end", qos=1)
        healthy.wait_payload(b"end", timeout=10)
    finally:
        peak = sampler.stop()
        stuck.close()
    assert b.alive()
    status, _ = b.http_get("/healthz")
    assert status == 200
    growth = peak - base
    assert growth < RSS_GROWTH_LIMIT_KB, f"broker RSS grew by {growth / 1024:.1f} MB"
    assert wait_until(lambda: dropped(b) > 0), b.stats()["deliveries_dropped"]


@pytest.mark.slow
def test_qos1_slow_subscriber_bounded_queue(broker, clients, uid):
    b = broker("[mqtt]\nmax_queued_messages = 100\nmax_inflight = 10\n")
    stuck = stuck_subscriber(b, uid + "-stuck", "bp/#", qos=1, version=5)
    healthy = clients(b, uid + "-healthy")
    healthy.subscribe("bp/#", qos=1)
    base = b.rss_kb()
    sampler = RssSampler(b)
    sampler.start()
    try:
        flood(b, uid + "-pub", "bp/data", N_MESSAGES, deadline=time.monotonic() + 60, qos=1)
        healthy.wait_messages(1, timeout=10)
    finally:
        peak = sampler.stop()
        stuck.close()
    assert b.alive()
    growth = peak - base
    assert growth < RSS_GROWTH_LIMIT_KB, f"broker RSS grew by {growth / 1024:.1f} MB"
    assert wait_until(lambda: b.stat("deliveries_dropped", "queue_full") > 0), b.stats()["deliveries_dropped"]
