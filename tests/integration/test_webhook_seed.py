"""The seed scenario of the EMQX Webhook page, end to end: mosquitto_pub -> mqhook -> a real HTTP receiver.

``mosquitto_pub -i emqx_c -t t/1 -m '{ "msg": "Hello Webhook" }'`` with nobody subscribed gives, in
order: client.connected, client.connack, client.check_authz_complete, message.publish,
message.dropped (no_subscribers), client.disconnected (normal), each with the key set of the
matching line of tests/data/seed_events.jsonl (real EMQX bodies) and the same JSON types.
client.check_authn_complete (EMQX >= 5.7.1, newer than the seed page) comes first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .receiver import (
    NODE,
    Receivers,
    addr,
    assert_guid,
    assert_props,
    assert_same_shape,
    config_toml,
    now_ms,
    webhook,
)

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
SEED_FILE = Path(__file__).resolve().parent.parent / "data" / "seed_events.jsonl"
SEED = [json.loads(line) for line in SEED_FILE.read_text().splitlines() if line.strip()]
SEED_BY_EVENT = {e["event"]: e for e in SEED}
SEED_ORDER = [e["event"] for e in SEED]
PAYLOAD = '{ "msg": "Hello Webhook" }'
AUTHN = "client.check_authn_complete"

# Keys EMQX 5.8.9 emits beyond the 2023 seed, exactly where the field matrix of
# /work/shared/reference/emqx-webhook.md §1.3 marks them (verified in emqx_rule_events.erl):
# client_attrs (5.7+) on PUB/CON/DIS/AZ; peername on PUB/DRP/AZ; connected_at on DIS.
MATRIX_EXTRAS: dict[str, set[str]] = {
    "client.connected": {"client_attrs"},
    "client.connack": set(),
    "client.check_authz_complete": {"client_attrs", "peername"},
    "message.publish": {"client_attrs", "peername"},
    "message.dropped": {"peername"},
    "client.disconnected": {"client_attrs", "connected_at"},
}
# client.check_authn_complete, from the field matrix (the seed page predates the event).
AUTHN_KEYS = {
    "event",
    "timestamp",
    "node",
    "metadata",
    "clientid",
    "username",
    "peername",
    "reason_code",
    "client_attrs",
    "is_superuser",
    "is_anonymous",
}
# Shapes of the extras, for the recursive type comparison.
EXTRA_SHAPES: dict[str, Any] = {"client_attrs": {}, "peername": "127.0.0.1:1", "connected_at": 0}

# What mosquitto_pub 2.0 puts in CONNECT (checked by capturing it): MQTT 5 always carries
# Receive-Maximum 20, 3.1.1 has no properties; keepalive 60. The seed's conn_props came from MQTTX
# (Request-Problem-Information), so props are compared with what this client really sent.
CONN_PROPS = {
    "mqttv5": {"User-Property": {}, "Receive-Maximum": 20},
    "mqttv311": {"User-Property": {}},
}
PROTO_VER = {"mqttv5": 5, "mqttv311": 4}
KEEPALIVE = 60

pytestmark = pytest.mark.skipif(not shutil.which("mosquitto_pub"), reason="mosquitto_pub not installed")


@pytest.fixture
def rx():
    yield from Receivers.fixture()


def mosquitto_pub(b: Any, *args: str) -> None:
    r = subprocess.run(
        [MOSQUITTO_PUB, "-h", b.host, "-p", str(b.mqtt_port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert r.returncode == 0, f"mosquitto_pub failed: rc={r.returncode} out={r.stdout!r} err={r.stderr!r}"


def expected_shape(name: str, version: str) -> dict[str, Any]:
    """The seed line with the documented extras added and the props this client really sent."""
    shape = dict(SEED_BY_EVENT[name])
    for key in MATRIX_EXTRAS[name]:
        shape[key] = EXTRA_SHAPES[key]
    if "conn_props" in shape:
        shape["conn_props"] = CONN_PROPS[version]
    return shape


def run_seed(rx: Receivers, broker: Any, version: str) -> tuple[Any, list[dict[str, Any]], int, int]:
    r = rx()
    # per_client + inflight_window 1: the receiver sees one client's events in the order they happened
    b = broker(config_toml([webhook("my-webhook", r.url("/"), ordering="per_client", inflight_window=1)]))
    t0 = now_ms()
    mosquitto_pub(b, "-V", version, "-i", "emqx_c", "-t", "t/1", "-m", PAYLOAD)
    r.wait_event("client.disconnected", clientid="emqx_c")
    r.wait_quiet(0.3)  # nothing more is coming (duplicates would show up here)
    t1 = now_ms()
    events = r.events(clientid="emqx_c")
    for req in r.requests():
        assert isinstance(req.json, dict), f"batch_size 1 sends one JSON object per request, got {req.body[:200]!r}"
    return b, events, t0, t1


@pytest.mark.parametrize("version", ["mqttv5", "mqttv311"], ids=["v5", "v311"])
def test_seed_scenario_order_and_key_sets(rx, broker, version):
    _, events, _, _ = run_seed(rx, broker, version)
    names = [e["event"] for e in events]
    assert names[0] == AUTHN, f"client.check_authn_complete must come first: {names}"
    assert names.count(AUTHN) == 1, names
    assert [n for n in names if n != AUTHN] == SEED_ORDER, names

    by = {e["event"]: e for e in events}
    authn = by[AUTHN]
    missing, extra = sorted(AUTHN_KEYS - set(authn)), sorted(set(authn) - AUTHN_KEYS)
    assert not missing and not extra, f"{AUTHN}: missing {missing}, unexpected {extra}"
    for name in SEED_ORDER:
        ev = by[name]
        want = set(SEED_BY_EVENT[name]) | MATRIX_EXTRAS[name]
        missing, extra = sorted(want - set(ev)), sorted(set(ev) - want)
        assert not missing and not extra, f"{name}: missing keys {missing}, unexpected keys {extra}; body {ev}"
        assert_same_shape(expected_shape(name, version), ev, name)


@pytest.mark.parametrize("version", ["mqttv5", "mqttv311"], ids=["v5", "v311"])
def test_seed_scenario_values(rx, broker, version):
    b, events, t0, t1 = run_seed(rx, broker, version)
    by = {e["event"]: e for e in events}
    assert set(by) == {AUTHN, *SEED_ORDER}, sorted(by)

    peername = by["client.connected"]["peername"]
    host, _, port = peername.rpartition(":")
    assert host == "127.0.0.1" and port.isdigit() and 0 < int(port) < 65536, peername
    assert int(port) != b.mqtt_port, "peername must be the client's address, not the listener's"
    sockname = addr((b.host, b.mqtt_port))

    for ev in events:
        name = ev["event"]
        assert ev["node"] == NODE, ev
        assert ev["metadata"] == {"rule_id": "my-webhook_WH_D"}, ev
        assert ev["clientid"] == "emqx_c", ev
        assert ev["username"] == "undefined", ev  # absent values are the string, not null
        assert isinstance(ev["timestamp"], int) and t0 - 1000 <= ev["timestamp"] <= t1 + 1000, (name, t0, t1)
        if "peername" in ev:
            assert ev["peername"] == peername, ev
        if "peerhost" in ev:
            assert ev["peerhost"] == "127.0.0.1", ev
        if "sockname" in ev:
            assert ev["sockname"] == sockname, ev
        if "client_attrs" in ev:
            assert ev["client_attrs"] == {}, ev
        for key in ("conn_props", "disconn_props", "pub_props"):
            if key in ev:
                assert_props(ev[key], f"{name}.{key}")

    authn = by[AUTHN]
    assert authn["reason_code"] == "success"
    assert authn["is_anonymous"] is True
    assert authn["is_superuser"] is False

    connected, connack = by["client.connected"], by["client.connack"]
    for ev in (connected, connack):
        assert ev["proto_name"] == "MQTT"
        assert ev["proto_ver"] == PROTO_VER[version]
        assert ev["clean_start"] is True
        assert ev["keepalive"] == KEEPALIVE
        assert ev["expiry_interval"] == 0
        assert ev["conn_props"] == CONN_PROPS[version]
    assert connected["mountpoint"] == "undefined"
    assert connected["is_bridge"] is False
    assert 1 <= connected["receive_maximum"] <= 65535
    assert t0 - 1000 <= connected["connected_at"] <= connected["timestamp"]
    assert connack["reason_code"] == "success"

    authz = by["client.check_authz_complete"]
    assert (authz["topic"], authz["action"], authz["result"], authz["authz_source"]) == (
        "t/1",
        "publish",
        "allow",
        "default",
    )

    publish, dropped = by["message.publish"], by["message.dropped"]
    assert_guid(publish["id"], t0, t1)
    assert dropped["id"] == publish["id"], "one message, one id"
    assert dropped["reason"] == "no_subscribers"
    for ev in (publish, dropped):
        assert ev["topic"] == "t/1"
        assert ev["qos"] == 0
        assert ev["payload"] == PAYLOAD
        assert ev["flags"] == {"retain": False, "dup": False}
        assert ev["pub_props"] == {"User-Property": {}}
        assert ev["publish_received_at"] == publish["publish_received_at"]
        assert t0 - 1000 <= ev["publish_received_at"] <= ev["timestamp"]

    disconnected = by["client.disconnected"]
    assert disconnected["reason"] == "normal"
    assert disconnected["proto_name"] == "MQTT"
    assert disconnected["proto_ver"] == PROTO_VER[version]
    assert disconnected["disconn_props"] == {"User-Property": {}}
    assert disconnected["connected_at"] == connected["connected_at"]
    assert connected["connected_at"] <= disconnected["disconnected_at"] <= disconnected["timestamp"]


def test_seed_scenario_with_the_cli_flag(rx, broker):
    """``mqhook run --webhook NAME=URL``: all events, all topics, one JSON object per request."""
    r = rx()
    b = broker(extra_args=["--webhook", f"cli-hook={r.url('/cli')}"])
    t0 = now_ms()
    mosquitto_pub(b, "-V", "mqttv5", "-i", "emqx_c", "-t", "t/1", "-m", PAYLOAD)
    r.wait_event("client.disconnected", clientid="emqx_c")
    r.wait_events(None, 7, clientid="emqx_c")
    r.wait_quiet(0.3)
    t1 = now_ms()
    events = r.events(clientid="emqx_c")
    assert sorted(e["event"] for e in events) == sorted([AUTHN, *SEED_ORDER])
    for req in r.requests():
        assert req.method == "POST"
        assert req.path == "/cli"
        assert req.headers.get("content-type", "").startswith("application/json"), dict(req.headers)
        assert isinstance(req.json, dict), req.body[:200]
    for ev in events:
        assert ev["metadata"] == {"rule_id": "cli-hook_WH_D"}, ev
        assert isinstance(ev["node"], str) and ev["node"].startswith("mqhook@"), ev
        assert t0 - 1000 <= ev["timestamp"] <= t1 + 1000
    by = {e["event"]: e for e in events}
    assert by["message.dropped"]["reason"] == "no_subscribers"
    assert by["message.dropped"]["id"] == by["message.publish"]["id"]
    assert by["client.disconnected"]["reason"] == "normal"
