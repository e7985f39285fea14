"""The Test button: send ONE real request with a sample event and report what came back.

EMQX's Test (``POST /connectors_probe``) only opens TCP/TLS connections, so a wrong path, a
401 or a 404 all "pass" (reference §2.7). Ours renders, signs and sends a sample
``message.publish`` event exactly like a real delivery (same templates, headers, signature,
method, batching shape) and returns the status, the latency and the first 512 bytes of the
reply, or the connection error (the URL shown without its password). It never raises for network
trouble and never retries.
"""

from __future__ import annotations

import msgspec

from mqhook.broker.message import Message
from mqhook.events.writer import MessageWriter
from mqhook.webhook.model import WebhookConfig
from mqhook.webhook.redact import url_without_password
from mqhook.webhook.request import RenderRefused, RequestBuilder, make_client, send_once

REPLY_PREFIX = 512
SAMPLE_PAYLOAD = b'{ "msg": "Hello Webhook" }'
SAMPLE_CLIENT = "mqhook_test"


class TestResult(msgspec.Struct, kw_only=True):
    """What the Test request produced. ``ok`` is True for a 2xx answer."""

    __test__ = False  # not a pytest test class

    ok: bool
    method: str
    url: str
    status: int | None = None
    latency_ms: float | None = None
    body: str = ""  # first 512 bytes of the reply, decoded as UTF-8 (invalid bytes replaced)
    error: str | None = None


def sample_event(node: str, payload_encoding: str = "plain") -> bytes:
    """A ``message.publish`` event for a QoS 0 PUBLISH to ``t/1`` (EMQX's sample), written by the
    same writer as real deliveries, so it has exactly their fields and types."""
    msg = Message("t/1", SAMPLE_PAYLOAD, 0, False, {}, SAMPLE_CLIENT, peerhost="127.0.0.1", peername="127.0.0.1:0")
    return MessageWriter(node).publish(payload_encoding, msg)


async def probe(cfg: WebhookConfig, node: str) -> TestResult:
    """Send the sample event to ``cfg``'s receiver once; connection errors are reported, not raised."""
    builder = RequestBuilder(cfg)
    raw = sample_event(node, cfg.payload_encoding)
    try:
        req = builder.build([(raw, SAMPLE_CLIENT)])
    except RenderRefused as exc:
        url = url_without_password(cfg.url)
        return TestResult(ok=False, method=builder.method, url=url, error=f"request refused, not sent: {exc}")
    client = make_client(cfg)  # the same client as deliveries: same bytes on the wire
    try:
        out = await send_once(client, req, builder.attempt_headers(req))
    finally:
        await client.close()
    return TestResult(
        ok=out.status is not None and 200 <= out.status <= 299,
        method=req.method,
        url=url_without_password(req.url),
        status=out.status,
        latency_ms=round(out.latency * 1000, 3),
        body=out.reply[:REPLY_PREFIX].decode("utf-8", "replace"),
        error=out.error,
    )
