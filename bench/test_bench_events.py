"""Micro benchmarks of the events layer: build a ``message.publish`` struct, then encode it to JSON
with ``msgspec.json.Encoder`` or with orjson (pytest-benchmark groups).

Run: ``.venv/bin/pytest bench/test_bench_events.py --benchmark-only -q -p no:cacheprovider``

orjson does not know msgspec Structs, so each orjson variant pays for the honest path to a body:
``msgspec.to_builtins`` then ``orjson.dumps``, or ``orjson.dumps(default=msgspec.to_builtins)`` (orjson
calls the hook for the struct itself; nested ``Flags`` go through the same hook). The "webhook body"
variants add ``metadata`` as the webhook layer must: msgspec splices the bytes, orjson sets a dict key.
The workload is a typical IoT message: 60-byte JSON payload, one user property, a known publisher.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from mqhook.broker.message import Message
from mqhook.events import build

NODE = "mqhook@bench"
BATCH = 100
METADATA = b',"metadata":{"rule_id":"bench_WH_D"}}'
ENCODER = msgspec.json.Encoder()


def make_message(i: int = 0) -> Message:
    payload = b'{"temperature":21.5,"humidity":40,"device":"sensor-%04d"}' % i
    props = {"User-Property": [("site", "lab")], "Content-Type": "application/json"}
    return Message(f"t/site/sensor-{i}", payload, 1, False, props, f"sensor-{i}", None, "device", "10.1.2.3")


def make_events(n: int) -> list[Any]:
    return [build.message_publish(make_message(i), NODE, "plain") for i in range(n)]


# -- build ---------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="build message.publish")
@pytest.mark.parametrize("encoding", ["plain", "base64"])
def test_build_publish(benchmark: Any, encoding: str) -> None:
    msg = make_message()
    event = benchmark(build.message_publish, msg, NODE, encoding)
    assert event.clientid == "sensor-0"


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
