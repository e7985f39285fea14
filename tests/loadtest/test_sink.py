"""The webhook receiver: counting, duplicates by id and by sequence number, latency, a real run."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from typing import Any

from mqhook.loadtest import Scenario, Target, run
from mqhook.loadtest.brokers import free_port
from mqhook.loadtest.packets import encode_payload
from mqhook.loadtest.runner import Bench, start_sink
from mqhook.loadtest.sink import Sink, SinkCounter, sink_summary


def _event(
    seq: int, msg_id: str, encoding: str = "plain", pub: int = 0, kind: str = "message.publish"
) -> dict[str, Any]:
    raw = encode_payload(pub, seq, time.time_ns() - 2_000_000, 40)  # sent 2 ms ago
    payload = raw.decode() if encoding == "plain" else base64.b64encode(raw).decode()
    return {"event": kind, "id": msg_id, "clientid": "c1", "payload": payload, "topic": "t", "qos": 0}


def _body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_counts_and_flags_duplicates_by_id_and_sequence() -> None:
    c = SinkCounter()
    assert c.feed(_body(_event(0, "A")))
    assert c.feed(_body([_event(1, "B"), _event(2, "C", "base64")]))  # a batch
    assert c.feed(_body(_event(1, "B")))  # a retry: same id, same sequence number
    assert c.feed(_body(_event(4, "E")))  # 3 never came
    assert c.feed(_body({"event": "client.connected", "clientid": "c1"}))
    assert c.feed(_body(_event(4, "E", kind="message.delivered")))  # another event type: not a duplicate
    assert not c.feed(b"not json")
    snap = c.snapshot()
    assert snap["requests"] == 7 and snap["bad_bodies"] == 1
    assert snap["events"] == 7
    assert snap["by_type"] == {"message.publish": 5, "client.connected": 1, "message.delivered": 1}
    assert snap["dup_ids"] == 1 and snap["distinct_ids"] == 5 and snap["no_id"] == 1
    assert snap["tracked"] == 5 and snap["distinct_seq"] == 4 and snap["dup_seq"] == 1
    assert snap["missing_below_max"] == 1
    assert snap["per_publisher"] == {0: 4}
    assert snap["latency_ms"]["count"] == 5 and snap["latency_ms"]["p50"] >= 1.0
    assert snap["max_batch"] == 2
    assert "duplicates by id: 1" in sink_summary(snap)


def test_delivery_events_are_keyed_by_subscriber() -> None:
    c = SinkCounter(track_event="message.delivered")
    ev = _event(0, "A", kind="message.delivered")
    c.feed(_body([ev, {**ev, "clientid": "c2"}, ev]))
    snap = c.snapshot()
    assert snap["dup_ids"] == 1 and snap["distinct_ids"] == 2


def test_payloads_that_are_not_ours_are_counted_apart() -> None:
    c = SinkCounter()
    c.feed(_body({"event": "message.publish", "id": "X", "payload": "hello"}))
    assert c.snapshot()["undecodable"] == 1 and c.snapshot()["distinct_seq"] == 0


def test_http_receiver() -> None:
    async def body() -> dict[str, Any]:
        sink = Sink()
        port = await sink.start("127.0.0.1", 0)
        try:
            loop = asyncio.get_running_loop()

            def post_and_count() -> dict[str, Any]:
                for payload in (_event(0, "A"), [_event(1, "B"), _event(1, "B")]):
                    req = urllib.request.Request(f"http://127.0.0.1:{port}/hook", data=_body(payload), method="POST")
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        assert resp.status == 200
                        assert json.loads(resp.read()) == {"result": "ok", "message": "success"}
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as resp:
                    return json.loads(resp.read())

            return await loop.run_in_executor(None, post_and_count)
        finally:
            await sink.stop()

    counts = asyncio.run(body())
    assert counts["events"] == 3 and counts["dup_ids"] == 1 and counts["dup_seq"] == 1


def test_sink_during_a_run(broker: Any) -> None:
    port = free_port()
    b = broker(extra_args=["--webhook", f"bench=http://127.0.0.1:{port}/"])
    result = run(
        Scenario(pubs=2, subs=1, count=300, stall=3.0, timeout=60.0),
        [Target("mqhook", b.host, b.mqtt_port, b.pid)],
        sink_port=port,
    )
    (res,) = result["runs"]
    assert res["lost"] == 0 and res["received"] == 300
    sink = res["sink"]
    assert sink["tracked"] == 300 and sink["lost"] == 0
    assert sink["dup_ids"] == 0 and sink["dup_seq"] == 0
    assert sink["latency_ms"]["count"] == 300
    assert sink["by_type"]["message.publish"] == 300
    assert result["sink_port"] == port


def test_a_sink_that_expects_no_events_does_not_wait_for_them(broker: Any) -> None:
    """``Bench(sink_expect=False)``: a webhook on other topics (here: none at all). The drain gives
    strays a moment instead of waiting ``stall`` seconds for events that never come."""
    b = broker()
    target = Target("mqhook", b.host, b.mqtt_port, b.pid)

    async def body() -> dict[str, Any]:
        sink, _port = await start_sink("127.0.0.1", 0, "message.publish", "auto", 60.0)
        try:
            bench = Bench(Scenario(count=200, stall=3.0, timeout=60.0), [target], sink=sink, sink_expect=False)
            return await bench.run_once(target, 0, use_sink=True)
        finally:
            await sink.close()

    res = asyncio.run(body())
    assert res["lost"] == 0 and not res["stalled"] and not res["errors"]
    sink = res["sink"]
    assert sink["events"] == 0 and sink["expected"] == 0 and sink["lost"] == 0 and not sink["stalled"]
    assert sink["process_cpu_s"] > 0
