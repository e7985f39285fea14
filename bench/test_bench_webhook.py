"""Webhook encoding: msgspec.json.Encoder vs orjson, one event and batches of 100, plus the hot path.

Run: ``.venv/bin/pytest bench/test_bench_webhook.py -q -p no:cacheprovider --benchmark-columns=min,median,ops``

The event is a message.publish with the fields of EMQX's sample (seed line 4). Each variant
produces the same JSON (checked), so the figures compare like for like:

- ``msgspec_splice``: encode the Struct once, splice the metadata bytes (what encode.py does);
- ``msgspec_dict``: Struct -> dict (to_builtins) + metadata, encoded by msgspec;
- ``orjson_dict``: the same dict encoded by orjson (orjson cannot take a Struct directly).

Decoding (what templates need for ``${field}``) compares ``msgspec.json.decode`` and ``orjson.loads``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson
import pytest

from mqhook.webhook.encode import meta_prefix, splice
from mqhook.webhook.model import parse_webhook
from mqhook.webhook.request import RequestBuilder
from mqhook.webhook.webhook import Webhook

RULE_ID = "my-webhook_WH_D"
PREFIX = meta_prefix(RULE_ID)
METADATA = {"rule_id": RULE_ID}


class Flags(msgspec.Struct, gc=False):
    retain: bool
    dup: bool


class Publish(msgspec.Struct, tag_field="event", tag="message.publish", gc=False, kw_only=True):
    id: str
    clientid: str
    username: str
    topic: str
    qos: int
    flags: Flags
    payload: str
    pub_props: dict[str, Any]
    peerhost: str
    publish_received_at: int
    timestamp: int
    node: str


def _event(i: int) -> Publish:
    return Publish(
        id=f"0006054DC3E940F8F445000038A6{i:04X}",
        clientid=f"client-{i % 50}",
        username="undefined",
        topic=f"sensors/{i % 50}/temp",
        qos=i % 2,
        flags=Flags(retain=False, dup=False),
        payload='{ "msg": "Hello Webhook", "value": 21.5 }',
        pub_props={"User-Property": {}},
        peerhost="127.0.0.1",
        publish_received_at=1694681417728 + i,
        timestamp=1694681417728 + i,
        node="mqhook@127.0.0.1",
    )


EVENT = _event(1)
BATCH = [_event(i) for i in range(100)]
_enc = msgspec.json.Encoder()


def msgspec_splice(ev: Publish) -> bytes:
    return splice(_enc.encode(ev), PREFIX)


def msgspec_dict(ev: Publish) -> bytes:
    d = msgspec.to_builtins(ev)
    d["metadata"] = METADATA
    return _enc.encode(d)


def orjson_dict(ev: Publish) -> bytes:
    d = msgspec.to_builtins(ev)
    d["metadata"] = METADATA
    return orjson.dumps(d)


def batch_msgspec_splice(evs: list[Publish]) -> bytes:
    return b"[" + b",".join([splice(_enc.encode(ev), PREFIX) for ev in evs]) + b"]"


def batch_msgspec_dict(evs: list[Publish]) -> bytes:
    return _enc.encode([{**msgspec.to_builtins(ev), "metadata": METADATA} for ev in evs])


def batch_orjson_dict(evs: list[Publish]) -> bytes:
    return orjson.dumps([{**msgspec.to_builtins(ev), "metadata": METADATA} for ev in evs])


ONE = {"msgspec_splice": msgspec_splice, "msgspec_dict": msgspec_dict, "orjson_dict": orjson_dict}
MANY = {"msgspec_splice": batch_msgspec_splice, "msgspec_dict": batch_msgspec_dict, "orjson_dict": batch_orjson_dict}


@pytest.mark.parametrize("variant", list(ONE))
def test_encode_one_event(benchmark: Any, variant: str) -> None:
    out = benchmark(ONE[variant], EVENT)
    assert json.loads(out) == json.loads(msgspec_dict(EVENT))


@pytest.mark.parametrize("variant", list(MANY))
def test_encode_batch_of_100(benchmark: Any, variant: str) -> None:
    out = benchmark(MANY[variant], BATCH)
    assert json.loads(out) == json.loads(batch_msgspec_dict(BATCH))


RAW = splice(_enc.encode(EVENT), PREFIX)


@pytest.mark.parametrize("decoder", ["msgspec", "orjson"])
def test_decode_event_for_templates(benchmark: Any, decoder: str) -> None:
    fn = msgspec.json.decode if decoder == "msgspec" else orjson.loads
    assert benchmark(fn, RAW)["clientid"] == EVENT.clientid


def test_build_request_of_100(benchmark: Any) -> None:
    """``RequestBuilder.build`` for a batch of 100 queued events: metadata spliced in, one JSON array."""
    builder = RequestBuilder(parse_webhook({"name": "my-webhook", "url": "http://127.0.0.1:1/", "batch_size": 100}))
    entries = [(_enc.encode(ev), ev.clientid) for ev in BATCH]
    req = benchmark(builder.build, entries)
    assert req.count == 100 and json.loads(req.body or b"") == json.loads(batch_msgspec_dict(BATCH))


def test_put_hot_path_1000_events(benchmark: Any) -> None:
    """``Webhook.put`` x 1000 on a webhook that is not started (no sender): the queue append."""
    wh = Webhook(parse_webhook({"name": "b", "url": "http://127.0.0.1:1/"}))
    events = [(_enc.encode(_event(i)), f"client-{i % 50}") for i in range(1000)]

    def put_1000() -> None:
        put = wh.put
        for raw, clientid in events:
            put(raw, clientid)

    def reset() -> None:
        wh._queue.clear()

    benchmark.pedantic(put_1000, setup=reset, rounds=300)
    assert wh.queuing == 1000 and sum(wh.dropped.values()) == 0
