"""Every webhook event type end to end, with the exact key set of the EMQX 5.8.9 field matrix
(/work/shared/reference/emqx-webhook.md §1.3), JSON types, client roles, shared message ids,
and a webhook's topic filters and event list."""

from __future__ import annotations

from typing import Any

import pytest

from .pahoc import V311
from .rawmqtt import (
    P_SESSION_EXPIRY,
    P_USER_PROPERTY,
    UNSUBACK,
    disconnect_packet,
    packet,
    parse_suback,
    props,
    u16,
    utf8,
)
from .receiver import (
    NODE,
    Receivers,
    addr,
    assert_guid,
    assert_props,
    config_toml,
    jtype,
    now_ms,
    start_broker,
    user_props,
    webhook,
)

try:
    import mqhook._eventjson

    import mqhook._topic_trie  # noqa: F401

    HAVE_EXT = True
except ImportError:  # no compiler where these tests run: both brokers use the references
    HAVE_EXT = False

# ---------------------------------------------------------------------------- the field matrix
ENVELOPE = {"event", "timestamp", "node", "metadata"}
# Columns PUB, DRP, DLV, ACK, DDR share these rows.
MESSAGE = ENVELOPE | {
    "id",
    "clientid",
    "username",
    "payload",
    "peerhost",
    "peername",
    "topic",
    "qos",
    "flags",
    "pub_props",
    "publish_received_at",
}
KEYS: dict[str, set[str]] = {
    "message.publish": MESSAGE | {"client_attrs"},
    "message.dropped": MESSAGE | {"reason"},
    "message.delivered": MESSAGE | {"from_clientid", "from_username"},
    "message.acked": MESSAGE | {"from_clientid", "from_username", "puback_props"},
    "delivery.dropped": MESSAGE | {"from_clientid", "from_username", "reason"},
    "client.connected": ENVELOPE
    | {
        "clientid",
        "username",
        "peername",
        "sockname",
        "client_attrs",
        "mountpoint",
        "proto_name",
        "proto_ver",
        "keepalive",
        "clean_start",
        "receive_maximum",
        "expiry_interval",
        "is_bridge",
        "conn_props",
        "connected_at",
    },
    "client.disconnected": ENVELOPE
    | {
        "clientid",
        "username",
        "peername",
        "sockname",
        "reason",
        "client_attrs",
        "proto_name",
        "proto_ver",
        "disconn_props",
        "connected_at",
        "disconnected_at",
    },
    "client.connack": ENVELOPE
    | {
        "clientid",
        "username",
        "peername",
        "sockname",
        "reason_code",
        "proto_name",
        "proto_ver",
        "keepalive",
        "clean_start",
        "expiry_interval",
        "conn_props",
    },
    "client.check_authz_complete": ENVELOPE
    | {"clientid", "username", "peerhost", "peername", "topic", "client_attrs", "action", "result", "authz_source"},
    "client.check_authn_complete": ENVELOPE
    | {"clientid", "username", "peername", "reason_code", "client_attrs", "is_superuser", "is_anonymous"},
    "session.subscribed": ENVELOPE
    | {"clientid", "username", "peerhost", "peername", "topic", "qos", "client_attrs", "sub_props"},
    "session.unsubscribed": ENVELOPE
    | {"clientid", "username", "peerhost", "peername", "topic", "qos", "client_attrs", "unsub_props"},
}
TYPES: dict[str, str] = {
    "event": "str",
    "timestamp": "int",
    "node": "str",
    "metadata": "dict",
    "id": "str",
    "clientid": "str",
    "username": "str",
    "from_clientid": "str",
    "from_username": "str",
    "payload": "str",
    "peerhost": "str",
    "peername": "str",
    "sockname": "str",
    "topic": "str",
    "qos": "int",
    "flags": "dict",
    "pub_props": "dict",
    "puback_props": "dict",
    "publish_received_at": "int",
    "reason": "str",
    "reason_code": "str",
    "client_attrs": "dict",
    "mountpoint": "str",
    "proto_name": "str",
    "proto_ver": "int",
    "keepalive": "int",
    "clean_start": "bool",
    "receive_maximum": "int",
    "expiry_interval": "int",
    "is_bridge": "bool",
    "conn_props": "dict",
    "disconn_props": "dict",
    "connected_at": "int",
    "disconnected_at": "int",
    "action": "str",
    "result": "str",
    "authz_source": "str",
    "is_superuser": "bool",
    "is_anonymous": "bool",
    "sub_props": "dict",
    "unsub_props": "dict",
}
PROPS_KEYS = ("pub_props", "puback_props", "conn_props", "disconn_props", "sub_props", "unsub_props")
MESSAGE_EVENTS = ("message.publish", "message.dropped", "message.delivered", "message.acked", "delivery.dropped")
NO_PROPS = {"User-Property": {}}


@pytest.fixture
def rx():
    yield from Receivers.fixture()


def check_event(ev: dict[str, Any], name: str, t0: int, t1: int, rule: str = "wh_WH_D") -> None:
    """Exact key set and JSON types from the matrix, plus the envelope every body carries."""
    assert ev["event"] == name, ev
    want = KEYS[name]
    missing, extra = sorted(want - set(ev)), sorted(set(ev) - want)
    assert not missing and not extra, f"{name}: missing keys {missing}, unexpected keys {extra}; body {ev}"
    for key in want:
        assert jtype(ev[key]) == TYPES[key], f"{name}.{key}: expected {TYPES[key]}, got {ev[key]!r}"
    assert ev["node"] == NODE
    assert ev["metadata"] == {"rule_id": rule}
    assert t0 - 1000 <= ev["timestamp"] <= t1 + 1000, (name, ev["timestamp"], t0, t1)
    for key in PROPS_KEYS:
        if key in ev:
            assert_props(ev[key], f"{name}.{key}")
    if "id" in ev:
        assert_guid(ev["id"], t0, t1)
    if "flags" in ev:
        assert set(ev["flags"]) >= {"retain", "dup"}, ev["flags"]
        assert all(isinstance(v, bool) for v in ev["flags"].values()), ev["flags"]
    for key in ("peername", "sockname"):
        if key in ev:
            host, _, port = ev[key].rpartition(":")
            assert host and port.isdigit(), f"{name}.{key}: {ev[key]!r} is not ip:port"
    if "client_attrs" in ev:
        assert ev["client_attrs"] == {}


# ---------------------------------------------------------------------------- message events
@pytest.mark.parametrize(
    ("qos", "impl"),
    [(1, "compiled"), (2, "compiled"), (1, "pure-python")],  # MQHOOK_PURE_PYTHON=1: the fallbacks of ext/
)
def test_publish_delivered_acked_roles_and_shared_id(rx, broker, raw, clients, uid, qos, impl):
    r = rx()
    env = {"MQHOOK_PURE_PYTHON": "1"} if impl == "pure-python" else None
    b = broker(config_toml([webhook("wh", r.url("/"), ordering="per_client")]), env=env)
    native = "python" if env else ("cython" if HAVE_EXT else "python")
    assert b.stats()["build"] | {"version": ""} == {
        "version": "",
        "topic_trie": native,
        "msgid": native,
        "eventjson": native,
    }
    topic = f"{uid}/t"
    t0 = now_ms()
    sub = clients(b, f"{uid}-sub")
    sub.subscribe(topic, qos=qos)
    sub_addr = addr(sub.c.socket().getsockname())
    pub = raw(b)
    assert pub.connect(f"{uid}-pub", username="pub-user").rc == 0
    pub_addr = addr(pub.sock.getsockname())
    pairs = [("a", "1"), ("a", "2"), ("b", "3")]
    pub.publish(topic, b"hello", qos=qos, pid=7, properties=[(P_USER_PROPERTY, p) for p in pairs])
    sub.wait_payload(b"hello")

    acked = r.wait_event("message.acked", topic=topic)
    delivered = r.wait_event("message.delivered", topic=topic)
    publish = r.wait_event("message.publish", topic=topic)
    t1 = now_ms()
    for ev in (publish, delivered, acked):
        check_event(ev, ev["event"], t0, t1)
        assert ev["id"] == publish["id"], "publish, delivered and acked of one message share its id"
        assert ev["topic"] == topic
        assert ev["qos"] == qos
        assert ev["payload"] == "hello"
        assert ev["flags"] == {"retain": False, "dup": False}
        assert ev["pub_props"] == user_props(pairs)  # last duplicate key wins in User-Property
        assert ev["publish_received_at"] == publish["publish_received_at"]
        assert ev["peerhost"] == "127.0.0.1"

    # message.publish: the publisher's view
    assert (publish["clientid"], publish["username"], publish["peername"]) == (f"{uid}-pub", "pub-user", pub_addr)
    # delivered / acked: clientid is the receiver, from_* the publisher
    for ev in (delivered, acked):
        assert ev["clientid"] == f"{uid}-sub"
        assert ev["username"] == "undefined"
        assert ev["peername"] == sub_addr
        assert ev["from_clientid"] == f"{uid}-pub"
        assert ev["from_username"] == "pub-user"
    assert acked["puback_props"] == NO_PROPS
    assert len(r.events("message.delivered", topic=topic)) == 1
    assert not r.events("message.dropped", topic=topic), "a message with a subscriber is not dropped"


def test_qos0_is_delivered_but_never_acked(rx, broker, clients, uid):
    r = rx()
    b = start_broker(broker, r, ordering="per_client")
    topic = f"{uid}/t"
    sub = clients(b, f"{uid}-sub")
    sub.subscribe(topic, qos=1)
    pub = clients(b, f"{uid}-pub")
    pub.publish(topic, b"q0", qos=0)
    sub.wait_payload(b"q0")
    delivered = r.wait_event("message.delivered", topic=topic)
    assert delivered["qos"] == 0
    # barrier: a QoS 1 copy to the same subscriber is acked, so anything for q0 came before
    pub.publish(topic, b"q1", qos=1)
    r.wait_event("message.acked", topic=topic, payload="q1")
    r.assert_no_event(0.3, "message.acked", payload="q0")


def test_delivery_dropped_keys_and_roles(rx, broker, clients, uid):
    r = rx()
    b = start_broker(broker, r, ordering="per_client")
    topic = f"{uid}/t"
    t0 = now_ms()
    c = clients(b, f"{uid}-self")
    c.subscribe(topic, qos=1, no_local=True)
    c.publish(topic, b"to-myself", qos=1)
    dd = r.wait_event("delivery.dropped", topic=topic)
    publish = r.wait_event("message.publish", topic=topic)
    t1 = now_ms()
    check_event(dd, "delivery.dropped", t0, t1)
    assert dd["reason"] == "no_local"
    assert dd["id"] == publish["id"]
    assert dd["clientid"] == dd["from_clientid"] == f"{uid}-self"
    assert dd["username"] == dd["from_username"] == "undefined"
    assert dd["peername"] == addr(c.c.socket().getsockname())
    assert dd["payload"] == "to-myself"
    assert dd["pub_props"] == NO_PROPS


def test_retain_flag(rx, broker, clients, uid):
    r = rx()
    b = start_broker(broker, r, ordering="per_client")
    pub = clients(b, f"{uid}-pub")
    pub.publish(f"{uid}/r", b"kept", qos=1, retain=True)
    ev = r.wait_event("message.publish", topic=f"{uid}/r")
    assert ev["flags"] == {"retain": True, "dup": False}


# ---------------------------------------------------------------------------- client events
@pytest.mark.parametrize("username", ["alice", None], ids=["username", "anonymous"])
def test_check_authn_complete(rx, broker, raw, uid, username):
    r = rx()
    b = start_broker(broker, r, ordering="per_client")
    t0 = now_ms()
    c = raw(b)
    assert c.connect(uid, username=username).rc == 0
    ev = r.wait_event("client.check_authn_complete", clientid=uid)
    check_event(ev, "client.check_authn_complete", t0, now_ms())
    assert ev["username"] == (username or "undefined")
    assert ev["reason_code"] == "success"
    assert ev["is_anonymous"] is True  # the built-in allow-all: no authenticator decided
    assert ev["is_superuser"] is False
    assert ev["peername"] == addr(c.sock.getsockname())
    connected = r.wait_event("client.connected", clientid=uid)
    assert connected["username"] == (username or "undefined")


def test_connect_connack_disconnect_with_properties(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, ordering="per_client")
    t0 = now_ms()
    c = raw(b)
    pairs = [("k", "1"), ("k", "2")]
    ack = c.connect(
        uid,
        clean=False,
        keepalive=45,
        properties=[(P_SESSION_EXPIRY, 300), *((P_USER_PROPERTY, p) for p in pairs)],
    )
    assert ack.rc == 0
    me = addr(c.sock.getsockname())
    c.send(disconnect_packet(5, 0, [(P_USER_PROPERTY, ("bye", "now"))]))
    c.wait_closed()
    disconnected = r.wait_event("client.disconnected", clientid=uid)
    connected = r.wait_event("client.connected", clientid=uid)
    connack = r.wait_event("client.connack", clientid=uid)
    t1 = now_ms()
    conn_props = {"Session-Expiry-Interval": 300, **user_props(pairs)}
    for ev in (connected, connack, disconnected):
        check_event(ev, ev["event"], t0, t1)
        assert ev["peername"] == me
        assert ev["sockname"] == addr((b.host, b.mqtt_port))
        assert (ev["proto_name"], ev["proto_ver"]) == ("MQTT", 5)
    for ev in (connected, connack):
        assert ev["clean_start"] is False
        assert ev["keepalive"] == 45
        assert ev["conn_props"] == conn_props
    # session expiry: seconds in client.connected, milliseconds in client.connack (as EMQX does)
    assert connected["expiry_interval"] == 300
    assert connack["expiry_interval"] == 300_000
    assert connack["reason_code"] == "success"
    assert connected["is_bridge"] is False
    assert connected["mountpoint"] == "undefined"
    assert disconnected["reason"] == "normal"
    assert disconnected["disconn_props"] == user_props([("bye", "now")])
    assert disconnected["connected_at"] == connected["connected_at"]
    assert connected["connected_at"] <= disconnected["disconnected_at"]


def test_subscribe_unsubscribe_and_their_authz(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, ordering="per_client")
    t0 = now_ms()
    c = raw(b)
    assert c.connect(uid).rc == 0
    me = addr(c.sock.getsockname())
    filters = [(f"{uid}/a", 1), (f"{uid}/+/b", 2), (f"$share/g/{uid}/s", 0)]
    assert c.subscribe(filters, pid=1, properties=[(P_USER_PROPERTY, ("k", "v"))]) == [1, 2, 0]
    subscribed = r.wait_events("session.subscribed", 3, clientid=uid)
    authz = r.wait_events("client.check_authz_complete", 3, clientid=uid)

    c.send(packet(0xA2, u16(2) + props([(P_USER_PROPERTY, ("k2", "v2"))]) + utf8(f"{uid}/a")))
    assert parse_suback(c.expect(UNSUBACK))[1] == [0]
    unsubscribed = r.wait_event("session.unsubscribed", clientid=uid)
    c.disconnect()
    c.wait_closed()
    r.wait_event("client.disconnected", clientid=uid)
    r.wait_quiet(0.3)
    t1 = now_ms()

    assert sorted((e["topic"], e["qos"]) for e in subscribed) == sorted(filters), "one event per filter"
    for ev in subscribed:
        check_event(ev, "session.subscribed", t0, t1)
        assert ev["sub_props"] == user_props([("k", "v")])
        assert (ev["peerhost"], ev["peername"], ev["username"]) == ("127.0.0.1", me, "undefined")
    assert len(authz) == 3, authz
    for ev in authz:
        check_event(ev, "client.check_authz_complete", t0, t1)
        assert (ev["action"], ev["result"], ev["authz_source"]) == ("subscribe", "allow", "default")
        assert (ev["peerhost"], ev["peername"]) == ("127.0.0.1", me)
    assert {f"{uid}/a", f"{uid}/+/b"} <= {e["topic"] for e in authz}

    check_event(unsubscribed, "session.unsubscribed", t0, t1)
    assert unsubscribed["topic"] == f"{uid}/a"
    assert unsubscribed["unsub_props"] == user_props([("k2", "v2")])
    assert (unsubscribed["peerhost"], unsubscribed["peername"]) == ("127.0.0.1", me)
    # EMQX does not emit session.unsubscribed for the filters left at disconnect (emqx#6385)
    assert len(r.events("session.unsubscribed", clientid=uid)) == 1


def test_check_authz_on_every_publish(rx, broker, raw, uid):
    """One decision per PUBLISH, each from the built-in allow-all rules ("default", never "cache")."""
    r = rx()
    b = start_broker(broker, r, events=["client.check_authz_complete"], ordering="per_client")
    t0 = now_ms()
    c = raw(b)
    assert c.connect(uid).rc == 0
    for i in range(3):
        c.publish(f"{uid}/same", b"%d" % i, qos=1, pid=i + 1)
    r.wait_events("client.check_authz_complete", 3, clientid=uid)
    r.wait_quiet(0.3)
    evs = r.events("client.check_authz_complete", clientid=uid)
    assert len(evs) == 3, evs
    for ev in evs:
        check_event(ev, "client.check_authz_complete", t0, now_ms())
        assert (ev["topic"], ev["action"], ev["result"], ev["authz_source"]) == (
            f"{uid}/same",
            "publish",
            "allow",
            "default",
        )


def test_v311_props_objects_are_always_present(rx, broker, clients, uid):
    r = rx()
    b = start_broker(broker, r, ordering="per_client")
    topic = f"{uid}/t"
    sub = clients(b, f"{uid}-sub", protocol=V311)
    sub.subscribe(topic, qos=1)
    pub = clients(b, f"{uid}-pub", protocol=V311)
    pub.publish(topic, b"x", qos=1)
    sub.wait_payload(b"x")
    pub.disconnect()
    for name in ("message.publish", "message.delivered", "message.acked"):
        assert r.wait_event(name, topic=topic)["pub_props"] == NO_PROPS
    assert r.wait_event("message.acked", topic=topic)["puback_props"] == NO_PROPS
    assert r.wait_event("client.connected", clientid=f"{uid}-pub")["conn_props"] == NO_PROPS
    assert r.wait_event("client.connack", clientid=f"{uid}-pub")["conn_props"] == NO_PROPS
    assert r.wait_event("client.disconnected", clientid=f"{uid}-pub")["disconn_props"] == NO_PROPS
    assert r.wait_event("session.subscribed", clientid=f"{uid}-sub")["sub_props"] == NO_PROPS


# ---------------------------------------------------------------------------- what a webhook selects
def test_topic_filters_select_message_events_only(rx, broker, clients, uid):
    """topics ["<uid>/a/#"]: message events for <uid>/a/1, none for <uid>/b/1; client events still come."""
    r = rx()
    b = start_broker(broker, r, topics=[f"{uid}/a/#"], ordering="per_client")
    sub = clients(b, f"{uid}-sub")
    sub.subscribe(f"{uid}/#", qos=1)
    pub = clients(b, f"{uid}-pub")
    pub.publish(f"{uid}/b/1", b"b", qos=1)
    pub.publish(f"{uid}/nobody-a", b"n", qos=1)
    pub.publish(f"{uid}/a/1", b"a", qos=1)
    sub.wait_payload(b"a")
    for name in ("message.publish", "message.delivered", "message.acked"):
        r.wait_event(name, topic=f"{uid}/a/1")
    r.wait_event("client.connected", clientid=f"{uid}-pub")
    r.wait_event("session.subscribed", clientid=f"{uid}-sub", topic=f"{uid}/#")
    r.wait_event("client.check_authz_complete", clientid=f"{uid}-pub", topic=f"{uid}/b/1")
    r.wait_quiet(0.3)
    others = [e for e in r.events() if e["event"] in MESSAGE_EVENTS and e["topic"] != f"{uid}/a/1"]
    assert not others, f"message events outside the webhook's topics: {others[:3]}"


def test_event_list_selects_events(rx, broker, clients, uid):
    r = rx()
    wanted = {"message.publish", "client.connected"}
    b = start_broker(broker, r, events=sorted(wanted), ordering="per_client")
    topic = f"{uid}/t"
    sub = clients(b, f"{uid}-sub")
    sub.subscribe(topic, qos=1)
    pub = clients(b, f"{uid}-pub")
    pub.publish(topic, b"x", qos=1)
    pub.publish(f"{uid}/nobody", b"y", qos=1)
    sub.wait_payload(b"x")
    pub.disconnect()
    r.wait_event("message.publish", topic=f"{uid}/nobody")
    r.wait_event("client.connected", clientid=f"{uid}-pub")
    r.wait_event("client.connected", clientid=f"{uid}-sub")
    r.wait_quiet(0.3)
    assert {e["event"] for e in r.events()} == wanted


def test_dollar_topics_are_not_matched_by_hash(rx, broker, clients, uid):
    """ "#" does not match $-topics [MQTT-4.7.2-1]; a webhook that names the $-filter gets them."""
    hash_rx, dollar_rx = rx(), rx()
    dollar = f"$test/{uid}"
    cfg = config_toml(
        [
            webhook("hash", hash_rx.url("/"), topics=["#"], ordering="per_client"),
            webhook("dollar", dollar_rx.url("/"), topics=["$test/#"], ordering="per_client"),
        ]
    )
    b = broker(cfg)
    sub = clients(b, f"{uid}-sub")
    sub.subscribe(dollar, qos=1)
    pub = clients(b, f"{uid}-pub")
    pub.publish(dollar, b"d", qos=1)
    sub.wait_payload(b"d")
    for name in ("message.publish", "message.delivered", "message.acked"):
        ev = dollar_rx.wait_event(name, topic=dollar)
        assert ev["metadata"] == {"rule_id": "dollar_WH_D"}
    pub.publish(f"{uid}/after", b"barrier", qos=1)
    hash_rx.wait_event("message.publish", topic=f"{uid}/after")
    hash_rx.wait_quiet(0.3)
    leaked = [e for e in hash_rx.events() if e["event"] in MESSAGE_EVENTS and e["topic"].startswith("$")]
    assert not leaked, f'"#" matched $-topics: {leaked[:3]}'
