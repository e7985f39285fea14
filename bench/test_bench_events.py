"""Micro benchmarks of the events layer (pytest-benchmark groups).

Run: ``.venv/bin/pytest bench/test_bench_events.py --benchmark-only -q -p no:cacheprovider``

- "write message.publish": the message-event writer (ext/eventjson.pyx, and its pure-Python
  reference) against the way mqhook did it before: build a ``MessagePublish`` struct, encode it
  with msgspec. All three give the same JSON (checked).
- "webhook hot path": what one PUBLISH costs the broker's loop when one webhook wants every
  message: the ``message.publish`` listener ``EventRouter`` installs -> write -> ``Webhook.put`` into its queue
  (the queue is emptied between rounds; the HTTP side is bench/test_bench_http.py's).
- struct encoding, msgspec vs orjson: client and session events are still structs.

orjson does not know msgspec Structs, so each orjson variant pays for the honest path to a body:
``msgspec.to_builtins`` then ``orjson.dumps``, or ``orjson.dumps(default=msgspec.to_builtins)`` (orjson
calls the hook for the struct itself; nested ``Flags`` go through the same hook). The "webhook body"
variants add ``metadata`` as the webhook layer must: msgspec splices the bytes, orjson sets a dict key.
The workload is a typical IoT message: 60-byte JSON payload, one user property, a known publisher.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import orjson
import pytest

import mqhook._eventjson_py as py_writer
from mqhook.broker.flow import Backpressure
from mqhook.broker.hooks import Hooks
from mqhook.broker.message import Message
from mqhook.events import EventRouter, MessageWriter
from mqhook.events.model import MessagePublish, flags
from mqhook.events.props import printable_props
from mqhook.events.writer import IMPLEMENTATION
from mqhook.webhook.model import parse_webhook
from mqhook.webhook.webhook import Webhook

NODE = "mqhook@bench"
BATCH = 100
METADATA = b',"metadata":{"rule_id":"bench_WH_D"}}'
ENCODER = msgspec.json.Encoder()


def make_message(i: int = 0) -> Message:
    payload = b'{"temperature":21.5,"humidity":40,"device":"sensor-%04d"}' % i
    props = {"User-Property": [("site", "lab")], "Content-Type": "application/json"}
    return Message(f"t/site/sensor-{i}", payload, 1, False, props, f"sensor-{i}", None, "device", "10.1.2.3")


def struct_publish(msg: Message, node: str = NODE) -> MessagePublish:
    """The struct mqhook built per event before the writer existed (the baseline)."""
    return MessagePublish(
        timestamp=time.time_ns() // 1_000_000,
        node=node,
        id=msg.id,
        clientid=msg.sender,
        username="undefined" if msg.username is None else msg.username,
        payload=msg.payload.decode("utf-8", "replace"),
        peerhost=msg.peerhost,
        peername=msg.peername,
        topic=msg.topic,
        qos=msg.qos,
        flags=flags(msg.retain, msg.dup),
        pub_props=printable_props(msg.properties),
        publish_received_at=int(msg.received_at * 1000),
    )


def make_events(n: int) -> list[Any]:
    return [struct_publish(make_message(i)) for i in range(n)]


def _same_event(a: bytes, b: bytes) -> bool:
    da, db = orjson.loads(a), orjson.loads(b)
    return abs(da.pop("timestamp") - db.pop("timestamp")) < 1000 and da == db


# -- write one message event -----------------------------------------------------------------------


class _PyWriter(MessageWriter):
    """MessageWriter over the pure-Python reference, whatever is built."""

    def publish(self, encoding: str, msg: Message) -> bytes:
        user = msg.username
        return py_writer.message_event(
            b'{"event":"message.publish","timestamp":', self._node, msg.sender,
            "undefined" if user is None else user, msg.peerhost, msg.peername, msg.id, msg.payload,
            encoding == "base64", msg.topic, msg.qos, msg.retain, msg.dup,
            ENCODER.encode(printable_props(msg.properties)) if msg.properties else None, msg.received_at,
            None, None, b',"client_attrs":{}}',
        )  # fmt: skip


WRITERS: dict[str, Any] = {
    f"writer ({IMPLEMENTATION})": MessageWriter(NODE).publish,
    "writer (python reference)": _PyWriter(NODE).publish,
    "struct + msgspec (before)": lambda encoding, msg: ENCODER.encode(struct_publish(msg)),
}


@pytest.mark.benchmark(group="write message.publish (one event, new message each time)")
@pytest.mark.parametrize("how", list(WRITERS))
def test_write_publish(benchmark: Any, how: str) -> None:
    msg = make_message()
    write = WRITERS[how]

    def one() -> bytes:
        msg._id = None  # a new message: its id is made too, as in the broker
        out: bytes = write("plain", msg)
        return out

    data = benchmark(one)
    assert _same_event(data, ENCODER.encode(struct_publish(msg)))


# -- the webhook hot path ----------------------------------------------------------------------------


@pytest.mark.benchmark(group="webhook hot path: one PUBLISH into a webhook's queue")
@pytest.mark.parametrize("topics", [["#"], ["t/+/+", "other/#"]], ids=["all topics", "filtered"])
def test_publish_into_webhook(benchmark: Any, topics: list[str]) -> None:
    cfg = parse_webhook(
        {"name": "bench", "url": "http://127.0.0.1:9/", "events": ["message.publish"], "topics": topics},
        "$.webhooks[0]",
    )
    hook = Webhook(cfg)  # not started: events stay queued, and are cleared between rounds
    hooks = Hooks()
    EventRouter(NODE, hooks, Backpressure(), [hook])
    msgs = [make_message(i) for i in range(1000)]

    def thousand() -> None:
        publish = hooks.message_publish
        assert publish is not None
        for msg in msgs:
            msg._id = None
            publish(msg)
        hook._queue.clear()

    benchmark(thousand)
    assert hook.matched >= 1000 and sum(hook.stats()["dropped"].values()) == 0


# -- encode one ----------------------------------------------------------------------------------


def _encode_msgspec(event: Any) -> bytes:
    return ENCODER.encode(event)


def _encode_orjson_builtins(event: Any) -> bytes:
    return orjson.dumps(msgspec.to_builtins(event))


def _encode_orjson_default(event: Any) -> bytes:
    return orjson.dumps(event, default=msgspec.to_builtins)


ONE = {
    "msgspec": _encode_msgspec,
    "orjson+to_builtins": _encode_orjson_builtins,
    "orjson+default": _encode_orjson_default,
}


@pytest.mark.benchmark(group="encode one event")
@pytest.mark.parametrize("how", list(ONE))
def test_encode_one(benchmark: Any, how: str) -> None:
    event = make_events(1)[0]
    data = benchmark(ONE[how], event)
    assert orjson.loads(data) == orjson.loads(_encode_msgspec(event))


def _body_msgspec(event: Any) -> bytes:
    return ENCODER.encode(event)[:-1] + METADATA


def _body_orjson(event: Any) -> bytes:
    doc = msgspec.to_builtins(event)
    doc["metadata"] = {"rule_id": "bench_WH_D"}
    return orjson.dumps(doc)


@pytest.mark.benchmark(group="encode one webhook body (with metadata)")
@pytest.mark.parametrize("how", ["msgspec", "orjson"])
def test_encode_one_body(benchmark: Any, how: str) -> None:
    event = make_events(1)[0]
    fn = _body_msgspec if how == "msgspec" else _body_orjson
    data = benchmark(fn, event)
    assert orjson.loads(data)["metadata"] == {"rule_id": "bench_WH_D"}


# -- encode a batch of 100 -----------------------------------------------------------------------


def _batch_msgspec(events: list[Any]) -> bytes:
    return ENCODER.encode(events)


def _batch_orjson_builtins(events: list[Any]) -> bytes:
    return orjson.dumps(msgspec.to_builtins(events))


def _batch_orjson_default(events: list[Any]) -> bytes:
    return orjson.dumps(events, default=msgspec.to_builtins)


BATCHES = {
    "msgspec": _batch_msgspec,
    "orjson+to_builtins": _batch_orjson_builtins,
    "orjson+default": _batch_orjson_default,
}


@pytest.mark.benchmark(group=f"encode a batch of {BATCH} events (one JSON array)")
@pytest.mark.parametrize("how", list(BATCHES))
def test_encode_batch(benchmark: Any, how: str) -> None:
    events = make_events(BATCH)
    data = benchmark(BATCHES[how], events)
    assert len(orjson.loads(data)) == BATCH
