"""Events from real broker objects, compared with real EMQX 5 webhook bodies.

The broker runs without sockets (``brokerkit``); a recording sink collects the JSON
``EventRouter`` puts, checks that it has exactly the keys of its ``mqhook.events.model``
struct, and keeps it decoded into that struct. Expected key sets and JSON types come from
``tests/data/seed_events.jsonl`` (bodies captured from EMQX) and, for events the
seed lacks, from the field matrix of EMQX 5.8.9 (``emqx_rule_events.erl``) written
out here by hand, independently of ``mqhook.events.model``.
"""

from __future__ import annotations

import base64
import copy
import json
import pickle
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mqhook.broker.broker import Broker
from mqhook.broker.hooks import HOOKPOINTS
from mqhook.broker.message import Message
from mqhook.errors import ConfigError
from mqhook.events import EMPTY_PROPS, EVENT_NAMES, EVENT_TYPES, Event, EventRouter, MessageWriter, printable_props
from mqhook.events import build as B
from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker

SEED = Path(__file__).resolve().parent.parent / "data" / "seed_events.jsonl"
NODE = "mqhook@test"
RULE_ID = "my-webhook_WH_D"

# Keys EMQX 5.8.9 emits beyond the captured seed bodies (the seed predates them): from
# eventmsg_publish / _dropped / _connected / _disconnected / _check_authz_complete.
SEED_EXTRAS: dict[str, dict[str, str]] = {
    "client.connected": {"client_attrs": "object"},
    "client.connack": {},
    "client.check_authz_complete": {"peername": "string", "client_attrs": "object"},
    "message.publish": {"peername": "string", "client_attrs": "object"},
    "message.dropped": {"peername": "string"},
    "client.disconnected": {"connected_at": "int", "client_attrs": "object"},
}

_ENVELOPE = {"event", "timestamp", "node", "metadata"}
_MSG = {"id", "clientid", "username", "payload", "peerhost", "peername", "topic", "qos", "flags"}
_MSG |= {"pub_props", "publish_received_at"}
_DELIVERY = _MSG | {"from_clientid", "from_username"}
# The EMQX 5.8.9 key set of every event (field matrix, section 1.3 of the reference notes).
EMQX_KEYS: dict[str, set[str]] = {
    "message.publish": _ENVELOPE | _MSG | {"client_attrs"},
    "message.dropped": _ENVELOPE | _MSG | {"reason"},
    "message.delivered": _ENVELOPE | _DELIVERY,
    "message.acked": _ENVELOPE | _DELIVERY | {"puback_props"},
    "delivery.dropped": _ENVELOPE | _DELIVERY | {"reason"},
    "client.connected": _ENVELOPE
    | {"clientid", "username", "mountpoint", "peername", "sockname", "proto_name", "proto_ver", "keepalive"}
    | {"clean_start", "receive_maximum", "expiry_interval", "is_bridge", "conn_props", "connected_at"}
    | {"client_attrs"},
    "client.disconnected": _ENVELOPE
    | {"reason", "clientid", "username", "peername", "sockname", "proto_name", "proto_ver", "disconn_props"}
    | {"disconnected_at", "connected_at", "client_attrs"},
    "client.connack": _ENVELOPE
    | {"reason_code", "clientid", "clean_start", "username", "peername", "sockname", "proto_name", "proto_ver"}
    | {"keepalive", "expiry_interval", "conn_props"},
    "client.check_authz_complete": _ENVELOPE
    | {"clientid", "username", "peername", "peerhost", "topic", "action", "authz_source", "result", "client_attrs"},
    "client.check_authn_complete": _ENVELOPE
    | {"clientid", "username", "peername", "reason_code", "is_anonymous", "is_superuser", "client_attrs"},
    "session.subscribed": _ENVELOPE
    | {"clientid", "username", "peerhost", "peername", "sub_props", "topic", "qos", "client_attrs"},
    "session.unsubscribed": _ENVELOPE
    | {"clientid", "username", "peerhost", "peername", "unsub_props", "topic", "qos", "client_attrs"},
}
_OBJECT_KEYS = {"flags", "client_attrs", "metadata"} | {k for k in set().union(*EMQX_KEYS.values()) if "props" in k}
_BOOL_KEYS = {"clean_start", "is_bridge", "is_anonymous", "is_superuser"}
_INT_KEYS = {"timestamp", "qos", "proto_ver", "keepalive", "receive_maximum", "expiry_interval"}
_INT_KEYS |= {"connected_at", "disconnected_at", "publish_received_at"}


class RecordingSink:
    """A sink that keeps everything (never saturated)."""

    def __init__(
        self,
        events: Any = EVENT_NAMES,
        topics: tuple[str, ...] = ("#",),
        payload_encoding: str = "plain",
        name: str = "rec",
    ) -> None:
        self.name = name
        self.events = frozenset(events)
        self.topics = topics
        self.payload_encoding = payload_encoding
        self.got: list[Any] = []  # each event decoded into its struct
        self.raws: list[bytes] = []  # each event as put

    def put(self, raw: bytes, clientid: str) -> bool:
        event = msgspec.json.decode(raw, type=Event)  # strict types; an unknown event name fails
        keys = set(json.loads(raw))
        assert keys == {"event", *type(event).__struct_fields__}, f"{EVENT_NAME[type(event)]}: keys {sorted(keys)}"
        assert clientid == event.clientid
        self.got.append(event)
        self.raws.append(raw)
        return True

    @property
    def saturated(self) -> bool:
        return False

    def on_relief(self, callback: Callable[[], None]) -> None:
        callback()

    def named(self, event: str) -> list[Any]:
        return [e for e in self.got if EVENT_NAME[type(e)] == event]

    def names(self) -> list[str]:
        return [EVENT_NAME[type(e)] for e in self.got]


EVENT_NAME = {cls: name for name, cls in EVENT_TYPES.items()}


def client(broker: Broker, level: int = 5, host: str = "127.0.0.1") -> Client:
    c = Client(broker, level)
    c.conn.peerhost = host  # what the server edge sets from the socket (FakeLink does not)
    return c


def wired(**config: Any) -> tuple[Broker, RecordingSink]:
    broker, _ = make_broker(**config)
    sink = RecordingSink()
    route(broker, sink)
    return broker, sink


def route(broker: Broker, *consumers: Any) -> EventRouter:
    """The events layer on ``broker``'s hook points, delivering to ``consumers``."""
    return EventRouter(NODE, broker.hooks, broker.backpressure, consumers)


def body(event: Any) -> dict[str, Any]:
    """The webhook body: the encoded struct plus the metadata the webhook layer adds."""
    out: dict[str, Any] = json.loads(msgspec.json.encode(event))
    out["metadata"] = {"rule_id": RULE_ID}
    return out


def json_type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "array", dict: "object"}.get(
        type(value), "null"
    )


def assert_same_shape(ours: Any, seed: Any, where: str) -> None:
    """Same JSON type; for objects (``*_props``, ``flags``) the same keys, recursively."""
    assert json_type(ours) == json_type(seed), f"{where}: {json_type(ours)} != {json_type(seed)} ({ours!r})"
    if isinstance(seed, dict):
        assert set(ours) == set(seed), f"{where}: keys {sorted(ours)} != {sorted(seed)}"
        for key in seed:
            assert_same_shape(ours[key], seed[key], f"{where}.{key}")


def seed_session() -> RecordingSink:
    """The seed's sequence, as MQTTX produced it: connect (v5, keepalive 30), publish t/1, disconnect."""
    broker, sink = wired()
    c = client(broker)
    c.connect("emqx_c", keepalive=30, properties={"Request-Problem-Information": 1})
    c.send(P.Publish("t/1", b'{ "msg": "Hello Webhook" }', 0))
    c.send(P.Disconnect())
    return sink


SEEDS = [json.loads(line) for line in SEED.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("seed", SEEDS, ids=[s["event"] for s in SEEDS])
def test_same_keys_and_types_as_emqx_seed(seed: dict[str, Any]) -> None:
    name = seed["event"]
    ours = body(seed_session().named(name)[0])
    extras = SEED_EXTRAS[name]
    assert set(ours) == set(seed) | set(extras), f"{name}: {sorted(set(ours) ^ (set(seed) | set(extras)))}"
    for key, value in seed.items():
        assert_same_shape(ours[key], value, name + ":" + key)
    for key, kind in extras.items():
        assert json_type(ours[key]) == kind, f"{name}.{key}"
    assert set(ours) == EMQX_KEYS[name]


def test_seed_values_that_must_match() -> None:
    sink = seed_session()
    bodies = {type(e): body(e) for e in sink.got}
    seeds = {s["event"]: s for s in SEEDS}
    for cls, ours in bodies.items():
        seed = seeds.get(EVENT_NAME[cls])
        if seed is None:
            continue
        for key in ("username", "clientid", "proto_name", "proto_ver", "clean_start", "keepalive", "mountpoint"):
            if key in seed:
                assert ours[key] == seed[key], (EVENT_NAME[cls], key)
        for key in ("topic", "qos", "payload", "flags", "reason", "reason_code", "result", "action"):
            if key in seed and key != "authz_source":
                assert ours[key] == seed[key], (EVENT_NAME[cls], key)
        assert ours["node"] == NODE
    connected = bodies[EVENT_TYPES["client.connected"]]
    assert connected["receive_maximum"] == 32  # max_inflight, as EMQX with its default
    assert connected["conn_props"] == {"User-Property": {}, "Request-Problem-Information": 1}
    assert connected["peername"] == "127.0.0.1:50000" and connected["sockname"] == "127.0.0.1:1883"
    assert bodies[EVENT_TYPES["client.check_authz_complete"]]["authz_source"] == "default"
    assert sink.names() == [
        "client.check_authn_complete",
        "client.connected",
        "client.connack",
        "client.check_authz_complete",
        "message.publish",
        "message.dropped",
        "client.disconnected",
    ]


def full_session() -> RecordingSink:
    """Every one of the twelve events at least once."""
    broker, sink = wired(max_queued_messages=1)
    sub = client(broker)
    sub.connect("sub", properties={"Session-Expiry-Interval": 60})
    sub.send(P.Subscribe(1, [P.Subscription("t/#", 1)], {"User-Property": [("k", "v")]}))
    pub = client(broker, host="10.0.0.2")
    pub.connect("pub", username="alice")
    pub.send(P.Subscribe(1, [P.Subscription("t/#", 1, no_local=True)]))
    pub.send(P.Publish("t/1", b"x", 1, packet_id=1))  # delivered to sub, delivery.dropped(no_local) for pub
    for packet in sub.link.take():
        if isinstance(packet, P.Publish):
            sub.send(P.Puback(packet.packet_id))
    sub.send(P.Unsubscribe(2, ["t/#"]))
    pub.send(P.Publish("nobody", b"y", 0))  # message.dropped
    pub.send(P.Disconnect())
    return sink


@pytest.mark.parametrize("name", sorted(EMQX_KEYS))
def test_every_event_has_exactly_the_emqx_keys_and_types(name: str) -> None:
    events = full_session().named(name)
    assert events, name
    ours = body(events[0])
    assert set(ours) == EMQX_KEYS[name]
    for key, value in ours.items():
        if key in _OBJECT_KEYS:
            assert json_type(value) == "object", key
        elif key in _BOOL_KEYS:
            assert json_type(value) == "bool", key
        elif key in _INT_KEYS:
            assert json_type(value) == "int", key
        else:
            assert json_type(value) == "string", key  # including every "undefined"
    for key in ours.keys() & {"pub_props", "puback_props", "conn_props", "disconn_props", "sub_props"}:
        assert "User-Property" in ours[key]
    if "flags" in ours:
        assert ours["flags"] == {"retain": False, "dup": False}
    assert abs(ours["timestamp"] - time.time() * 1000) < 5000


def test_receiver_and_publisher_roles() -> None:
    sink = full_session()
    (delivered,) = sink.named("message.delivered")
    assert (delivered.clientid, delivered.username, delivered.peerhost) == ("sub", "undefined", "127.0.0.1")
    assert delivered.peername == "127.0.0.1:50000"
    assert (delivered.from_clientid, delivered.from_username, delivered.qos) == ("pub", "alice", 1)
    (acked,) = sink.named("message.acked")
    assert (acked.clientid, acked.from_clientid, acked.puback_props) == ("sub", "pub", {"User-Property": {}})
    (ddrop,) = sink.named("delivery.dropped")
    assert (ddrop.clientid, ddrop.username, ddrop.reason, ddrop.from_clientid) == ("pub", "alice", "no_local", "pub")
    publish = sink.named("message.publish")[0]
    assert (publish.clientid, publish.username, publish.peerhost) == ("pub", "alice", "10.0.0.2")
    (sub,) = [e for e in sink.named("session.subscribed") if e.clientid == "sub"]
    assert sub.sub_props == {
        "User-Property": {"k": "v"},
        "User-Property-Pairs": [{"key": "k", "value": "v"}],
    }
    assert (sub.topic, sub.qos, sub.peerhost) == ("t/#", 1, "127.0.0.1")
    (unsub,) = sink.named("session.unsubscribed")
    assert (unsub.clientid, unsub.topic, unsub.unsub_props) == ("sub", "t/#", EMPTY_PROPS)


def test_delivery_dropped_for_an_offline_receiver_keeps_its_last_client_info() -> None:
    broker, sink = wired(max_queued_messages=1)
    sub = client(broker)
    sub.connect("away", clean=False, properties={"Session-Expiry-Interval": 60})
    sub.send(P.Subscribe(1, [P.Subscription("q", 1)]))
    sub.send(P.Disconnect())
    pub = client(broker)
    pub.connect("pub")
    pub.send(P.Publish("q", b"1", 1, packet_id=1))  # queued
    pub.send(P.Publish("q", b"2", 1, packet_id=2))  # queue full
    (dropped,) = sink.named("delivery.dropped")
    assert (dropped.clientid, dropped.reason, dropped.qos) == ("away", "queue_full", 1)
    # EMQX keeps the receiver's ClientInfo with its session: the last connection's address, no user name.
    assert (dropped.username, dropped.peerhost, dropped.peername) == ("undefined", "127.0.0.1", "127.0.0.1:50000")


def test_expiry_interval_is_seconds_in_connected_and_ms_in_connack() -> None:
    broker, sink = wired()
    client(broker).connect("c", clean=False, properties={"Session-Expiry-Interval": 120})
    assert sink.named("client.connected")[0].expiry_interval == 120
    assert sink.named("client.connack")[0].expiry_interval == 120_000


def test_connack_failure_uses_mqtt5_reason_names_for_311_clients() -> None:
    broker, sink = wired()
    c = client(broker, level=4)
    c.send(P.Connect("", proto_level=4, clean_start=False))
    (connack,) = sink.named("client.connack")
    assert connack.reason_code == "client_identifier_not_valid"
    assert (connack.proto_ver, connack.conn_props) == (4, {"User-Property": {}})
    assert sink.named("client.connected") == [] and sink.named("client.disconnected") == []


def test_disconnect_reason_and_props() -> None:
    broker, sink = wired()
    first = client(broker)
    first.connect("same", clean=False)
    client(broker).connect("same", clean=False)
    (gone,) = sink.named("client.disconnected")
    assert (gone.clientid, gone.reason) == ("same", "takenover")
    assert gone.disconnected_at >= gone.connected_at > 0


def test_will_message_event_has_undefined_peer() -> None:
    broker, sink = wired()
    c = client(broker)
    c.connect("w", will=P.Will("last/will", b"bye", 0, False))
    c.conn.connection_lost()
    (publish,) = [e for e in sink.named("message.publish") if e.topic == "last/will"]
    assert (publish.clientid, publish.payload, publish.peername) == ("w", "bye", "undefined")


# -- message ids --------------------------------------------------------------------------------

ID_RE = re.compile(r"^[0-9A-F]{32}$")


def test_message_id_format_and_sharing() -> None:
    sink = full_session()
    ids: dict[str, set[str]] = {}
    for name in ("message.publish", "message.delivered", "message.acked", "delivery.dropped", "message.dropped"):
        for event in sink.named(name):
            assert ID_RE.match(event.id), event.id
            assert abs(int(event.id[:16], 16) - time.time() * 1_000_000) < 1_000_000  # µs timestamp first
            ids.setdefault(event.topic, set()).add(event.id)
    assert {topic: len(found) for topic, found in ids.items()} == {"t/1": 1, "nobody": 1}
    assert ids["t/1"] != ids["nobody"]
    t1 = {EVENT_NAME[type(e)] for e in sink.got if getattr(e, "topic", "") == "t/1" and hasattr(e, "id")}
    assert t1 == {"message.publish", "message.delivered", "message.acked", "delivery.dropped"}
    nobody = {EVENT_NAME[type(e)] for e in sink.got if getattr(e, "topic", "") == "nobody" and hasattr(e, "id")}
    assert nobody == {"message.publish", "message.dropped"}


# -- payload encodings --------------------------------------------------------------------------

BINARY = bytes(range(256))


def payload_of(payload: bytes, encoding: str) -> str:
    raw = MessageWriter(NODE).publish(encoding, Message("t", payload, 0, False, {}, "c"))
    text: str = json.loads(raw)["payload"]
    return text


def test_plain_payload_is_emqx_compatible_and_loses_binary() -> None:
    assert payload_of("héllo".encode(), "plain") == "héllo"
    assert payload_of(b"a\xffb", "plain") == "a\ufffdb"
    assert payload_of(BINARY, "plain") == BINARY.decode("utf-8", "replace") != BINARY.decode("latin-1")


def test_base64_payload_survives_binary() -> None:
    text = payload_of(BINARY, "base64")
    assert text == base64.b64encode(BINARY).decode() and base64.b64decode(text) == BINARY
    assert payload_of(b"", "base64") == ""
    with pytest.raises(ConfigError, match="payload_encoding 'hex'"):
        route(make_broker()[0], RecordingSink(payload_encoding="hex"))


def test_builders_encode_payload_per_encoding() -> None:
    broker, _ = make_broker()
    hooks = RecordingSink(events=["message.publish"], payload_encoding="base64")
    route(broker, hooks)
    c = client(broker)
    c.connect("b64")
    c.send(P.Publish("bin", BINARY, 0))
    (event,) = hooks.got
    decoded = json.loads(msgspec.json.encode(event))
    assert base64.b64decode(decoded["payload"]) == BINARY


# -- props --------------------------------------------------------------------------------------


def test_props_always_have_user_property() -> None:
    assert printable_props(None) is EMPTY_PROPS
    assert printable_props({}) is EMPTY_PROPS
    assert printable_props({"Message-Expiry-Interval": 30}) == {"User-Property": {}, "Message-Expiry-Interval": 30}


def test_user_property_pairs_keep_wire_order_and_last_duplicate_wins() -> None:
    props = {"User-Property": [("a", "1"), ("b", "2"), ("a", "3")], "Content-Type": "text/plain"}
    out = printable_props(props)
    assert out == {
        "User-Property": {"a": "3", "b": "2"},
        "User-Property-Pairs": [
            {"key": "a", "value": "1"},
            {"key": "b", "value": "2"},
            {"key": "a", "value": "3"},
        ],
        "Content-Type": "text/plain",
    }
    assert props["User-Property"] == [("a", "1"), ("b", "2"), ("a", "3")]  # input untouched


def test_bytes_properties_become_strings() -> None:
    out = printable_props({"Correlation-Data": b"req-1\xff", "Authentication-Data": bytearray(b"ok")})
    assert out["Correlation-Data"] == "req-1\ufffd" and out["Authentication-Data"] == "ok"
    assert json.loads(msgspec.json.encode(out))["Correlation-Data"] == "req-1\ufffd"


def test_other_properties_pass_through() -> None:
    out = printable_props({"Subscription-Identifier": [1, 7], "Payload-Format-Indicator": 1})
    assert out["Subscription-Identifier"] == [1, 7] and out["Payload-Format-Indicator"] == 1
    assert printable_props({"Subscription-Identifier": 5})["Subscription-Identifier"] == 5
    assert printable_props({"User-Property": {"x": "y"}})["User-Property-Pairs"] == [{"key": "x", "value": "y"}]


def test_shared_empty_props_cannot_be_changed() -> None:
    for mutate in (
        lambda d: d.__setitem__("x", 1),
        lambda d: d.update(x=1),
        lambda d: d.pop("User-Property"),
        lambda d: d.clear(),
        lambda d: d.setdefault("x", 1),
        lambda d: d["User-Property"].__setitem__("x", "y"),
    ):
        with pytest.raises(TypeError):
            mutate(EMPTY_PROPS)
    assert EMPTY_PROPS == {"User-Property": {}}
    assert copy.deepcopy(EMPTY_PROPS) is EMPTY_PROPS
    assert pickle.loads(pickle.dumps(EMPTY_PROPS)) == EMPTY_PROPS


def test_events_without_props_share_one_object() -> None:
    broker, _ = make_broker()
    c = client(broker)
    c.connect("p")
    assert B.client_disconnected(NODE, c.conn, "normal", {}).disconn_props is EMPTY_PROPS
    assert B.session_subscribed(NODE, c.conn, "t", 0, {}).sub_props is EMPTY_PROPS


# -- the structs themselves ---------------------------------------------------------------------


def test_struct_tags_and_config() -> None:
    # One row per event, one broker hook point per row, and the key sets written out above.
    assert set(EVENT_TYPES) == set(EVENT_NAMES) == set(HOOKPOINTS) == set(EMQX_KEYS)
    assert len(EVENT_NAMES) == len(set(EVENT_NAMES)) == 12
    for name, cls in EVENT_TYPES.items():
        config = cls.__struct_config__
        assert (config.tag, config.tag_field, config.gc) == (name, "event", False)
        with pytest.raises(TypeError):
            cls(1, "node", "clientid", "username")  # kw_only: positional arguments are refused
        assert "clientid" in cls.__struct_fields__ and "metadata" not in cls.__struct_fields__


def test_bodies_decode_back_into_the_union() -> None:
    for event in full_session().got:
        data = json.dumps(body(event)).encode()  # with metadata, as a receiver or a spool sees it
        again = msgspec.json.decode(data, type=Event)
        assert again == event


def test_builder_direct_call_matches_hook_output() -> None:
    broker, _ = make_broker()
    c = client(broker)
    c.connect("direct", username="u")
    event = B.client_connected("n@h", c.conn)
    assert (event.clientid, event.username, event.node, event.mountpoint, event.is_bridge) == (
        "direct",
        "u",
        "n@h",
        "undefined",
        False,
    )


def test_flags_follow_the_message_and_the_copy() -> None:
    broker, sink = wired()
    live = client(broker)
    live.connect("live")
    live.send(P.Subscribe(1, [P.Subscription("r", 1)]))  # Retain As Published = 0
    pub = client(broker)
    pub.connect("pub")
    pub.send(P.Publish("r", b"x", 1, retain=True, dup=True, packet_id=1))
    late = client(broker)
    late.connect("late")
    late.send(P.Subscribe(1, [P.Subscription("r", 1)]))  # gets the retained copy
    (publish,) = sink.named("message.publish")
    assert body(publish)["flags"] == {"retain": True, "dup": True}
    copies = {e.clientid: body(e)["flags"] for e in sink.named("message.delivered")}
    assert copies == {"live": {"retain": False, "dup": True}, "late": {"retain": True, "dup": True}}
