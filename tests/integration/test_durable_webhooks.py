"""Durable webhooks and the outage promises (README "Reliability"), with real processes: a broker
``mqhook run``, a real HTTP receiver that can go down and come back on the same port, and QoS 1
publishers on raw sockets. Every wait is for a condition, bounded."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from conftest import Broker, run_cli
from mqhook.webhook.spool import read_records

from .rawmqtt import PUBACK, RawClient, publish_packet
from .receiver import Receiver
from .util import wait_until

pytestmark = pytest.mark.timeout(120)


class Restartable(Receiver):
    """A receiver that keeps its port across ``stop()``/``start()`` (the receiver going down and back)."""

    async def _startup(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    def start(self, timeout: float = 5.0) -> Restartable:
        self._closing = False
        self._started = threading.Event()
        super().start(timeout)
        return self


@pytest.fixture
def receiver() -> Any:
    rx = Restartable()
    rx.start()
    yield rx
    rx.stop()


def hook_config(url: str, **over: Any) -> str:
    settings = {
        "name": "d",
        "url": url,
        "events": ["message.publish"],
        "retry_backoff": "20ms",
        "retry_backoff_max": "200ms",
        "connect_timeout": "1s",
        "request_timeout": "2s",
        "batch_size": 100,
        "durable": True,
        **over,
    }
    lines = ["[[webhooks]]"]
    for k, v in settings.items():
        lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def publish(b: Broker, n: int, rate: float = 2000.0, start: int = 0, client_id: str = "pub") -> int:
    """``n`` QoS 1 PUBLISHes (payload = their number as JSON) at about ``rate``/s, 20 per window,
    each window's PUBACKs awaited; returns how many were acknowledged."""
    pub = RawClient(b.host, b.mqtt_port, version=5, timeout=30)
    acked = 0
    try:
        assert pub.connect(client_id).rc == 0
        t0 = time.monotonic()
        for first in range(start, start + n, 20):
            ids = range(first, min(first + 20, start + n))
            pub.send(b"".join(publish_packet("t/x", b'{"n":%d}' % i, qos=1, pid=1 + i % 20) for i in ids))
            for _ in ids:
                pub.expect(PUBACK, timeout=30)
                acked += 1
            ahead = t0 + (acked / rate) - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    finally:
        pub.close()
    return acked


def payload_numbers(rx: Receiver) -> list[int]:
    return [json.loads(e["payload"])["n"] for e in rx.events("message.publish")]


def wait_delivered(rx: Receiver, want: set[int], timeout: float = 60.0) -> list[int]:
    got: list[int] = []

    def done() -> bool:
        got[:] = payload_numbers(rx)
        return want <= set(got)

    rx.wait_for(done, timeout, f"{len(want)} distinct events")
    return got


def stat(b: Broker, *path: str) -> Any:
    node: Any = b.stats()["webhooks"]["d"]
    for key in path:
        node = node[key]
    return node


@pytest.mark.parametrize("mode", ["durable", "memory_backpressure"])
def test_receiver_down_under_load_then_back_every_event_once(broker, receiver, mode: str) -> None:
    """(1) The receiver is down while 4,000 QoS 1 messages arrive at ~2k/s, then comes back: every
    event is delivered, none twice: a durable webhook, and a memory webhook with backpressure
    (its promise: nothing dropped while mqhook runs; retries have no limit there)."""
    over = {"durable": True} if mode == "durable" else {"durable": False, "overflow": "backpressure"}
    b = broker(hook_config(receiver.url("/"), **over))
    receiver.stop()  # down
    n = 4000
    assert publish(b, n) == n
    assert wait_until(lambda: stat(b, "retried") > 0, timeout=10)
    receiver.start()  # back, same port
    got = wait_delivered(receiver, set(range(n)))
    receiver.wait_quiet(0.3)
    got = payload_numbers(receiver)
    assert len(got) == n, f"{len(got) - n} duplicates"
    s = b.stats()["webhooks"]["d"]
    assert s["success"] == n and sum(s["dropped"].values()) == 0 and s["failed"] == 0, s


def test_sigkill_mid_outage_then_restart_delivers_every_acknowledged_event(broker, receiver, tmp_path: Path) -> None:
    """(2) Receiver failing (503), mqhook SIGKILLed with events spooled, restarted on the same data
    directory: every event whose PUBLISH was acknowledged arrives; one sent before the crash is sent
    again with the same webhook-id."""
    receiver.default_status = 503
    data = tmp_path / "data"
    cfg = hook_config(receiver.url("/"), batch_size=1, inflight_window=10)
    b = broker(cfg, data_dir=data)
    n = 2000
    assert publish(b, n) == n
    receiver.wait_for(lambda: len(receiver.requests()) >= 10, 10, "attempts before the crash")
    b.stop(signal.SIGKILL)
    before = {json.loads(r.events[0]["payload"])["n"]: r.headers["webhook-id"] for r in receiver.requests()}
    receiver.default_status = 200
    b2 = broker(cfg, data_dir=data)
    wait_delivered(receiver, set(range(n)))
    receiver.wait_quiet(0.3)
    after: dict[int, str] = {}
    for r in receiver.requests():
        if r.ok:
            after[json.loads(r.events[0]["payload"])["n"]] = r.headers["webhook-id"]
    assert set(after) == set(range(n))
    same = [k for k in before if after[k] == before[k]]
    assert same == list(before), "a re-sent event changed its webhook-id"
    assert "event(s) to deliver again" in b2.stderr_text()


def test_a_torn_last_record_is_reported_and_the_rest_delivered(broker, receiver, tmp_path: Path) -> None:
    """(3) The spool's last record cut in half (a torn write): start-up says so, counts it, and
    delivers the others."""
    data = tmp_path / "data"
    receiver.stop()
    cfg = hook_config(receiver.url("/"), fsync="always")
    b = broker(cfg, data_dir=data)
    assert publish(b, 50) == 50
    b.stop(signal.SIGKILL)
    seg = sorted((data / "spool" / "d").glob("seg-*.log"))[-1]
    raw = seg.read_bytes()
    records, corrupt, end = read_records(raw)
    assert len(records) == 50 and corrupt == 0
    seg.write_bytes(raw[: end - 8])
    receiver.start()
    b2 = broker(cfg, data_dir=data)
    wait_delivered(receiver, set(range(49)))
    receiver.wait_quiet(0.3)
    assert sorted(payload_numbers(receiver)) == list(range(49))
    assert "corrupt or cut record" in b2.stderr_text()
    assert stat(b2, "spool_corrupt") == 1
    _status, metrics = b2.http_get("/metrics")
    assert b'mqhook_webhook_spool_corrupt_records_total{webhook="d"} 1.0' in metrics


def test_a_full_spool_applies_the_overflow_policy_and_counts_it(broker, receiver) -> None:
    """(4) ``max_spool_bytes`` reached while the receiver is down: drop_new refuses and counts."""
    receiver.stop()
    b = broker(hook_config(receiver.url("/"), max_spool_bytes="8KB", overflow="drop_new"))
    assert publish(b, 200) == 200
    s = b.stats()["webhooks"]["d"]
    assert s["dropped"]["queue_full"] > 0
    assert s["matched"] == 200 == s["dropped"]["queue_full"] + s["queuing"] + s["inflight_events"] + s["success"]
    receiver.start()
    kept = 200 - s["dropped"]["queue_full"]
    receiver.wait_for(lambda: len(payload_numbers(receiver)) >= kept, 30, f"{kept} events")
    assert sorted(payload_numbers(receiver)) == list(range(kept))  # drop_new keeps the oldest


def test_500_for_a_while_then_ok_is_retried_and_delivered(broker, receiver) -> None:
    """(5a) A receiver answering 500 for a while: retried (counted ``retried``), then delivered."""
    receiver.set_statuses([500] * 15)
    b = broker(hook_config(receiver.url("/"), batch_size=10))
    assert publish(b, 100) == 100
    wait_delivered(receiver, set(range(100)))
    s = b.stats()["webhooks"]["d"]
    assert s["success"] == 100 and s["retried"] > 0 and s["failed"] == 0


def test_slower_than_request_timeout_is_retried_and_counted_timeout(broker, receiver) -> None:
    """(5b) Slower than ``request_timeout``: each such attempt counted ``timeout`` and retried, so the
    events arrive (a receiver that processed a timed-out request sees it again, same webhook-id)."""
    slow = {"left": 2}

    def delay(req: Any) -> float:
        if slow["left"] > 0:
            slow["left"] -= 1
            return 1.0
        return 0.0

    receiver.delay = delay
    b = broker(hook_config(receiver.url("/"), request_timeout="300ms", batch_size=10, inflight_window=1))
    assert publish(b, 10) == 10
    b.wait_stat(("webhooks", "d", "success"), lambda v: v == 10, timeout=20)
    _status, metrics = b.http_get("/metrics")
    assert b'mqhook_webhook_requests_total{outcome="timeout",webhook="d"} 2.0' in metrics


def test_301_fails_at_once_into_the_dead_letters_then_api_list_replay_purge(broker, receiver) -> None:
    """(5c) A 301 is not retried: counted ``failed`` and, with ``dead_letter = true``, kept as a dead
    letter; the API lists, replays (delivered this time) and purges them."""
    receiver.set_statuses([301] * 3)
    b = broker(hook_config(receiver.url("/"), batch_size=1, inflight_window=1, dead_letter=True))
    assert publish(b, 5) == 5
    b.wait_stat(("webhooks", "d", "success"), lambda v: v == 2, timeout=10)
    s = b.stats()["webhooks"]["d"]
    assert s["failed"] == 3 and s["dead_lettered"] == 3 and s["dead_letters"] == 3
    status, body = b.api("GET", "/api/v1/webhooks/d/deadletters")
    assert status == 200 and body["meta"]["count"] == 3
    assert [json.loads(d["event"]["payload"])["n"] for d in body["data"]] == [0, 1, 2]
    assert {d["reason"] for d in body["data"]} == {"failed"}
    first_at = body["data"][0]["at"]
    status, body = b.api("POST", f"/api/v1/webhooks/d/deadletters/replay?until={first_at + 1e-6}")
    assert status == 200 and body == {"replayed": 1, "left": 2}
    wait_delivered(receiver, {0, 1, 2, 3, 4} - {1, 2})
    status, body = b.api("DELETE", "/api/v1/webhooks/d/deadletters")
    assert status == 200 and body == {"purged": 2, "left": 0}
    status, metrics = b.http_get("/metrics")
    assert b'mqhook_webhook_dead_lettered_total{webhook="d"} 3.0' in metrics
    status, doc = b.api("GET", "/api/v1/openapi.json")
    assert "/api/v1/webhooks/{name}/deadletters/replay" in doc["paths"]


def test_dead_letters_through_the_cli(broker, receiver, tmp_path: Path) -> None:
    """``mqhook deadletters``: list while the daemon runs (read-only), replay/purge refused on the files
    then, done through --api; on the files once it is stopped: replay puts them into the spool,
    delivered at the next start."""
    receiver.default_status = 400
    data = tmp_path / "data"
    cfg = hook_config(receiver.url("/"), batch_size=1, inflight_window=1, dead_letter=True)
    b = broker(cfg, data_dir=data)
    assert publish(b, 4) == 4
    b.wait_stat(("webhooks", "d", "dead_letters"), lambda v: v == 4, timeout=10)
    out = run_cli(["deadletters", "list", "d", "--data-dir", str(data)])
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 4, out.stderr
    out = run_cli(["deadletters", "purge", "d", "--data-dir", str(data)])
    assert out.returncode == 1 and "running" in out.stderr
    _status, key = b.api("POST", "/api/v1/api_keys", {"name": "cli", "description": "", "enable": True})
    api = ["--api", f"http://{b.admin_host}:{b.admin_port}", "--api-key", f"{key['api_key']}:{key['api_secret']}"]
    out = run_cli(["deadletters", "list", "d", *api])
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 4, out.stderr
    first = json.loads(out.stdout.splitlines()[0])
    out = run_cli(["deadletters", "purge", "d", "--until", str(first["at"] + 1e-6), *api])
    assert out.returncode == 0 and '"purged": 1' in out.stderr
    b.stop()
    receiver.default_status = 200
    out = run_cli(["deadletters", "replay", "d", "--data-dir", str(data)])
    assert out.returncode == 0 and "3 dead letter(s)" in out.stderr, out.stderr
    broker(cfg, data_dir=data)
    wait_delivered(receiver, {1, 2, 3})
    assert run_cli(["deadletters", "list", "d", "--data-dir", str(data)]).stdout == ""


def test_a_replaced_durable_webhook_keeps_its_spool(broker, receiver) -> None:
    """A live change (REST PUT) of a durable webhook keeps its spooled events and delivers them."""
    receiver.stop()
    b = broker()
    body = {"name": "d", "url": receiver.url("/"), "events": ["message.publish"], "durable": True,
            "retry_backoff": "20ms", "retry_backoff_max": "100ms", "connect_timeout": "1s"}  # fmt: skip
    status, _ = b.api("POST", "/api/v1/webhooks", body)
    assert status == 201
    assert publish(b, 100) == 100
    status, _ = b.api("PUT", "/api/v1/webhooks/d", {**body, "batch_size": 50})
    assert status == 200
    receiver.start()
    wait_delivered(receiver, set(range(100)))
    receiver.wait_quiet(0.3)
    assert len(payload_numbers(receiver)) == 100


@pytest.mark.parametrize("durable", [False, True])
def test_sigterm_says_what_was_dropped_or_stays_spooled(broker, receiver, durable: bool) -> None:
    """SIGTERM with events queued for a down receiver: a memory webhook logs what it drops (counted
    ``stopped``); a durable one logs what stays in its spool."""
    receiver.stop()
    b = broker(hook_config(receiver.url("/"), durable=durable, retry_backoff="30s", retry_backoff_max="30s"))
    assert publish(b, 500) == 500
    b.wait_stat(("webhooks", "d", "requests"), lambda v: v > 0)
    assert b.stop() == 0
    err = b.stderr_text()
    if durable:
        assert "stay in the spool" in err, err[-2000:]
    else:
        assert "dropped at shutdown (counted dropped.stopped)" in err, err[-2000:]
