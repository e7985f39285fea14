"""WebhookManager (sinks, stats, the Test operation) and the ``mqhook sink`` receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mqhook.errors import ConfigError
from mqhook.sink import make_app
from mqhook.webhook import WebhookManager

from .kit import Publish, Received, Receiver, config, free_port, put, run, until

SEED = Path(__file__).resolve().parents[1] / "data" / "seed_events.jsonl"


def _seed_publish_keys() -> set[str]:
    for line in SEED.read_text().splitlines():
        if '"message.publish"' in line:
            return set(json.loads(line))
    raise AssertionError("no message.publish line in the seed")


def test_manager_builds_consumers_starts_them_and_reports_stats() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        mgr = WebhookManager(
            [config(rx.url("/a"), name="a"), config(rx.url("/b"), name="b", enable=False, events=["client.connected"])],
            node="mqhook@test",
        )
        assert [w.name for w in mgr.consumers] == ["a"]
        b = mgr.get("b")
        assert b is not None and b.events == frozenset({"client.connected"}) and mgr.get("zzz") is None
        a = mgr.get("a")
        assert a is not None and "message.publish" in a.events and a.topics == ("#",)
        mgr.start()
        put(a, Publish(clientid="c"))
        await until(lambda: a.success == 1)
        stats = mgr.stats()
        assert stats["a"]["matched"] == 1 and stats["a"]["success"] == 1 and stats["a"]["queuing"] == 0
        assert stats["b"]["enable"] is False and stats["a"]["dropped"]["queue_full"] == 0
        await mgr.close(1.0)
        await rx.stop()

    run(body())


def test_duplicate_names_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\$\.webhooks\[1\]\.name: 'x'"):
        WebhookManager([config("http://127.0.0.1:1/", name="x"), config("http://127.0.0.1:2/", name="x")], "mqhook@t")


def test_test_operation_sends_a_real_signed_sample_and_reports_the_reply() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        mgr = WebhookManager([], node="mqhook@box")
        cfg = config(rx.url("/t/${clientid}"), name="probe-me", secret="s3cret", headers={"x-topic": "${topic}"})
        result = await mgr.test(cfg)
        assert result.ok and result.status == 200 and result.error is None
        assert result.latency_ms is not None and result.latency_ms > 0
        assert json.loads(result.body) == {"result": "ok", "message": "success"}
        (rec,) = rx.requests
        sample = rec.json()
        # the seed's keys plus the two EMQX 5.8.9 added since (tests/unit/test_events.py SEED_EXTRAS)
        assert set(sample) == _seed_publish_keys() | {"peername", "client_attrs"}
        assert sample["event"] == "message.publish" and sample["node"] == "mqhook@box"
        assert sample["metadata"] == {"rule_id": "probe-me_WH_D"}
        assert len(sample["id"]) == 32 and sample["id"] == sample["id"].upper()
        assert rec.path == "/t/" + sample["clientid"] and rec.headers["x-topic"] == sample["topic"]
        signed = f"{rec.headers['webhook-id']}.{rec.headers['webhook-timestamp']}.".encode() + rec.body
        mac = base64.b64encode(hmac.new(b"s3cret", signed, hashlib.sha256).digest()).decode()
        assert rec.headers["webhook-signature"] == "v1," + mac
        await rx.stop()

    run(body())


def test_test_operation_reports_http_errors_and_long_replies() -> None:
    async def body() -> None:
        async def not_found(rec: Received, request: web.Request) -> web.Response:
            return web.Response(status=404, text="n" * 2000)

        rx = await Receiver(not_found).start()
        result = await WebhookManager([], node="mqhook@test").test(config(rx.url(), batch_size=10))
        assert not result.ok and result.status == 404 and result.body == "n" * 512
        assert isinstance(rx.requests[0].json(), list)  # same shape as a real batched request
        await rx.stop()

    run(body())


def test_test_operation_reports_connection_refused_without_raising() -> None:
    async def body() -> None:
        port = free_port()
        result = await WebhookManager([], node="mqhook@test").test(config(f"http://127.0.0.1:{port}/"))
        assert not result.ok and result.status is None
        assert result.error is not None and "refused" in result.error and str(port) in result.error

    run(body())


def test_mqhook_sink_prints_one_line_per_request_and_answers_like_the_seed() -> None:
    async def body() -> None:
        lines: list[str] = []
        async with TestClient(TestServer(make_app(lines.append))) as client:
            resp = await client.post("/hook?x=1", data=b'{"event": "message.publish", "n": 1}')
            assert resp.status == 200
            assert await resp.json() == {"result": "ok", "message": "success"}
            resp = await client.put("/other", data=b"\xffnot json")
            assert resp.status == 200
            resp = await client.get("/g")
            assert resp.status == 200
        assert lines == [
            'POST /hook?x=1 {"event": "message.publish", "n": 1}',
            "PUT /other \ufffdnot json",
            "GET /g",
        ]

    run(body())
