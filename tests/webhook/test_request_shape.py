"""What goes on the wire: templates, refused headers, Standard Webhooks signatures, payload encodings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

from aiohttp import web

from mqhook.broker.flow import Backpressure
from mqhook.broker.hooks import Hooks
from mqhook.broker.message import Message
from mqhook.events import EventRouter

from .kit import Publish, Received, Receiver, balanced, put, run, until, webhook


def verify_standard_webhook(key: bytes, rec: Received) -> bool:
    """Standard Webhooks verification, written from the spec, independent of mqhook.webhook.signing."""
    msg_id = rec.headers["webhook-id"]
    timestamp = rec.headers["webhook-timestamp"]
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + rec.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in rec.headers["webhook-signature"].split(" ") if s.startswith("v1,")]
    fresh = abs(time.time() - int(timestamp)) < 300
    return fresh and any(hmac.compare_digest(expected, s) for s in offered)


def test_whsec_secret_signs_every_attempt_with_a_stable_id() -> None:
    async def body() -> None:
        key = os.urandom(32)
        count = {"n": 0}

        async def once_503(rec: Received, request: web.Request) -> web.Response | None:
            count["n"] += 1
            return web.Response(status=503) if count["n"] == 1 else None

        rx = await Receiver(once_503).start()
        wh = webhook(rx.url(), secret="whsec_" + base64.b64encode(key).decode(), retry_backoff="0ms")
        wh.start()
        put(wh, Publish(clientid="c", payload='{"a": 1}'))
        await rx.wait_for(lambda: len(rx.requests) == 2)
        first, second = rx.requests
        assert verify_standard_webhook(key, first) and verify_standard_webhook(key, second)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert not verify_standard_webhook(os.urandom(32), first)
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_plain_string_secret_is_used_as_utf8_bytes_and_ids_are_unique() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), secret="correct horse battery staple")
        wh.start()
        for i in range(3):
            put(wh, Publish(clientid="c", seq=i))
        await rx.wait_for(lambda: len(rx.requests) == 3)
        assert all(verify_standard_webhook(b"correct horse battery staple", r) for r in rx.requests)
        assert len({r.headers["webhook-id"] for r in rx.requests}) == 3
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_templates_in_url_path_header_and_json_safe_body() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(
            rx.url("/dev/${clientid}/${topic}"),
            headers={"content-type": "application/json", "x-client": "${clientid}", "x-lit": "$${clientid}"},
            body='{"c": ${json:payload}, "who": "${clientid}", "n": ${timestamp}, "raw": ${json:payload.k}}',
        )
        wh.start()
        tricky = 'He said "hi" \\ then\nleft {"k": 1}'
        put(wh, Publish(clientid="dev 1?x", topic="a/b", payload=tricky, timestamp=3))
        put(wh, Publish(clientid="d2", payload='{"k": [1, "two"]}', timestamp=4))
        await rx.wait_for(lambda: len(rx.requests) == 2)
        by_client = {r.headers["x-client"]: r for r in rx.requests}
        first, second = by_client["dev 1?x"], by_client["d2"]
        assert first.path == "/dev/dev%201%3Fx/a%2Fb"  # each variable is one path segment
        assert first.headers["x-lit"] == "${clientid}"
        assert first.json() == {"c": tricky, "who": "dev 1?x", "n": 3, "raw": "undefined"}
        assert second.json() == {"c": '{"k": [1, "two"]}', "who": "d2", "n": 4, "raw": [1, "two"]}
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_header_rendering_cr_lf_is_refused_and_counted() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), headers={"x-user": "${username}"})
        wh.start()
        put(wh, Publish(clientid="evil", username="a\r\nX-Injected: 1", seq=1))
        put(wh, Publish(clientid="good", username="bob", seq=2))
        await rx.wait_for(lambda: rx.requests)
        await until(lambda: wh.success == 1)
        assert [r.json()["seq"] for r in rx.requests] == [2]
        assert all("X-Injected" not in r.headers for r in rx.requests)
        assert wh.dropped["request_refused"] == 1
        assert wh.last_error is not None and "x-user" in wh.last_error and "CR" in wh.last_error
        await wh.close(1.0)
        await rx.stop()
        assert balanced(wh)

    run(body())


def test_batches_split_where_templated_url_differs() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url("/c/${clientid}"), batch_size=10)
        for i, client in enumerate(["a", "a", "b", "b", "b", "a"]):
            put(wh, Publish(clientid=client, seq=i))
        wh.start()
        await rx.wait_for(lambda: len(rx.events()) == 6)
        for rec in rx.requests:
            assert {e["clientid"] for e in rec.json()} == {rec.path.rsplit("/", 1)[1]}
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_base64_payload_round_trips_binary_and_plain_replaces_like_emqx() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        b64 = webhook(rx.url("/b64"), name="b64", payload_encoding="base64")
        plain = webhook(rx.url("/plain"), name="plain")
        assert b64.payload_encoding == "base64" and plain.payload_encoding == "plain"
        blob = bytes(range(256))
        hooks = Hooks()
        EventRouter("mqhook@test", hooks, Backpressure(), [b64, plain])  # the events layer encodes per webhook
        for wh in (b64, plain):
            wh.start()
        assert hooks.message_publish is not None
        hooks.message_publish(Message("t/1", blob, 0, False, {}, "c"))
        await rx.wait_for(lambda: len(rx.requests) == 2)
        got = {r.path: r.json()["payload"] for r in rx.requests}
        assert base64.b64decode(got["/b64"]) == blob
        assert got["/plain"] == blob.decode("utf-8", "replace") and "\ufffd" in got["/plain"]
        await b64.close(1.0)
        await plain.close(1.0)
        await rx.stop()

    run(body())


def test_body_is_exactly_the_event_json_plus_metadata() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), name="my-webhook")
        wh.start()
        put(wh, Publish(clientid="emqx_c", payload='{ "msg": "Hello Webhook" }', seq=9, timestamp=1694681417728))
        await rx.wait_for(lambda: rx.requests)
        assert json.loads(rx.requests[0].body) == {
            "event": "message.publish",
            "clientid": "emqx_c",
            "topic": "t/1",
            "payload": '{ "msg": "Hello Webhook" }',
            "seq": 9,
            "username": "undefined",
            "timestamp": 1694681417728,
            "node": "mqhook@test",
            "metadata": {"rule_id": "my-webhook_WH_D"},
        }
        await wh.close(1.0)
        await rx.stop()

    run(body())
