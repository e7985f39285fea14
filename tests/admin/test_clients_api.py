"""Clients, subscriptions, the event catalogue and the overview (docs/api.md, Broker), with real
paho-mqtt clients."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conftest import Broker, wait_until

from .helpers import CLIENT_KEYS, assert_error, create, delete_quietly, hook

KICKED = 0x98  # v5 DISCONNECT reason: Administrative action


def clients_page(b: Broker, query: str) -> dict[str, Any]:
    status, body = b.api("GET", f"/api/v1/clients?{query}")
    assert status == 200, f"GET /api/v1/clients?{query} -> {status}: {body}"
    assert set(body) >= {"data", "meta"} and set(body["meta"]) >= {"page", "limit", "count"}, body
    return body


def test_clients_paging_and_prefix(default_broker: Broker, nid: str, mqtt_clients: Any) -> None:
    b = default_broker
    ids = [f"{nid}-c{i}" for i in range(5)]
    for cid in ids:
        mqtt_clients(b, cid)
    mqtt_clients(b, f"other-{nid}")  # does not have the prefix
    seen: list[str] = []
    sizes = []
    for page in (1, 2, 3):
        body = clients_page(b, f"clientid_prefix={nid}&limit=2&page={page}")
        assert body["meta"]["page"] == page and body["meta"]["limit"] == 2, body["meta"]
        assert body["meta"]["count"] == 5, f"meta.count should be the number of matching clients: {body['meta']}"
        sizes.append(len(body["data"]))
        seen += [c["clientid"] for c in body["data"]]
    assert sizes == [2, 2, 1], sizes
    assert sorted(seen) == sorted(ids), seen
    assert clients_page(b, f"clientid_prefix={nid}&limit=2&page=4")["data"] == []
    all_mine = clients_page(b, f"clientid_prefix={nid}")
    assert all_mine["meta"]["limit"] == 100 and all_mine["meta"]["page"] == 1, all_mine["meta"]
    assert sorted(c["clientid"] for c in all_mine["data"]) == sorted(ids)
    unfiltered = clients_page(b, "limit=1000")
    assert {*ids, f"other-{nid}"} <= {c["clientid"] for c in unfiltered["data"]}


def test_get_one_client(default_broker: Broker, nid: str, mqtt_clients: Any) -> None:
    b = default_broker
    cid = f"{nid}-one"
    t0 = int(time.time() * 1000)
    c = mqtt_clients(b, cid, keepalive=42)
    c.subscribe(f"{nid}/x/#", qos=1)
    status, body = b.api("GET", f"/api/v1/clients/{cid}")
    assert status == 200, body
    assert set(body) == CLIENT_KEYS, sorted(set(body) ^ CLIENT_KEYS)
    assert body["clientid"] == cid and body["connected"] is True, body
    assert body["proto_ver"] == 5 and body["proto_name"] == "MQTT", body
    assert body["keepalive"] == 42 and body["clean_start"] is True, body
    assert body["subscriptions_cnt"] == 1, body
    assert t0 - 2000 <= body["connected_at"] <= int(time.time() * 1000) + 2000, f"connected_at in ms: {body}"
    assert body["sockname"].endswith(f":{b.mqtt_port}"), body
    assert body["peername"].startswith("127.0.0.1:"), body


def test_unknown_client_is_404(default_broker: Broker, nid: str) -> None:
    b = default_broker
    assert_error(*b.api("GET", f"/api/v1/clients/nope-{nid}"), 404, "NOT_FOUND")
    assert_error(*b.api("DELETE", f"/api/v1/clients/nope-{nid}"), 404, "NOT_FOUND")


def test_session_without_connection_is_listed(default_broker: Broker, nid: str, mqtt_clients: Any) -> None:
    b = default_broker
    cid = f"{nid}-persistent"
    c = mqtt_clients(b, cid, clean=False, connect_props={"SessionExpiryInterval": 300})
    c.subscribe(f"{nid}/p", qos=1)
    c.disconnect()
    assert wait_until(lambda: b.api("GET", f"/api/v1/clients/{cid}")[1].get("connected") is False), b.api(
        "GET", f"/api/v1/clients/{cid}"
    )
    body = b.api("GET", f"/api/v1/clients/{cid}")[1]
    # clean_start: of the connection that made the session, or null without a connection (not specified)
    assert body["expiry_interval"] == 300 and body["clean_start"] in (False, None), body
    listed = clients_page(b, f"clientid_prefix={cid}")["data"]
    assert [x["connected"] for x in listed] == [False], listed
    # DELETE ends the session
    status, out = b.api("DELETE", f"/api/v1/clients/{cid}")
    assert status == 204, out
    assert_error(*b.api("GET", f"/api/v1/clients/{cid}"), 404, "NOT_FOUND")


def test_kick_disconnects_with_0x98_and_fires_kicked(
    default_broker: Broker, nid: str, mqtt_clients: Any, receivers: Any
) -> None:
    b = default_broker
    r = receivers()
    create(b, hook(nid, r.url(), None, events=["client.disconnected"]))
    try:
        cid = f"{nid}-victim"
        c = mqtt_clients(b, cid)
        status, body = b.api("DELETE", f"/api/v1/clients/{cid}")
        assert status == 204, body
        assert body is None
        assert c.disconnected.wait(5), "the kicked client was not disconnected"
        assert c.disconnect_rc == KICKED, f"DISCONNECT reason {c.disconnect_rc!r}, expected 0x98"
        ev = r.wait_event("client.disconnected", clientid=cid)
        assert ev["reason"] == "kicked", ev
        assert wait_until(lambda: b.api("GET", f"/api/v1/clients/{cid}")[0] == 404), "session not ended"
    finally:
        delete_quietly(b, nid)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("page=1&limit=", "limit"),
    ],
)
@pytest.mark.parametrize("route", ["/api/v1/clients", "/api/v1/subscriptions"])
def test_bad_paging_is_400(default_broker: Broker, route: str, query: str, field: str) -> None:
    status, body = default_broker.api("GET", f"{route}?{query}")
    assert_error(status, body, 400, "BAD_REQUEST", field)


def test_limit_bounds_are_accepted(default_broker: Broker) -> None:
    for q in ("limit=1", "limit=1000", "page=1000"):
        status, body = default_broker.api("GET", f"/api/v1/clients?{q}")
        assert status == 200, (q, body)


def test_subscriptions_list(default_broker: Broker, nid: str, mqtt_clients: Any) -> None:
    b = default_broker
    cid = f"{nid}-sub"
    c = mqtt_clients(b, cid)
    c.subscribe(f"{nid}/s/#", qos=1, no_local=True, rap=True, rh=2)
    c.subscribe(f"{nid}/t", qos=0)
    status, body = b.api("GET", f"/api/v1/subscriptions?clientid={cid}")
    assert status == 200, body
    assert set(body) >= {"data", "meta"}, body
    subs = {s["topic"]: s for s in body["data"]}
    assert set(subs) == {f"{nid}/s/#", f"{nid}/t"}, body
    s = subs[f"{nid}/s/#"]
    assert set(s) == {"clientid", "topic", "qos", "nl", "rap", "rh"}, s
    assert s["clientid"] == cid and s["qos"] == 1 and s["rh"] == 2, s
    assert s["nl"] in (True, 1) and s["rap"] in (True, 1), s
    assert subs[f"{nid}/t"]["qos"] == 0
    status, body = b.api("GET", f"/api/v1/subscriptions?topic={nid}/t")
    assert status == 200 and [x["clientid"] for x in body["data"]] == [cid], body
    status, body = b.api("GET", f"/api/v1/subscriptions?clientid={cid}&limit=1&page=2")
    assert status == 200 and len(body["data"]) == 1, body
    assert body["meta"]["count"] == 2, body["meta"]


EMQX_EVENTS = {
    "message.publish": "message",
    "message.delivered": "message",
    "message.acked": "message",
    "message.dropped": "message",
    "delivery.dropped": "message",
    "client.connected": "client",
    "client.disconnected": "client",
    "client.connack": "client",
    "client.check_authz_complete": "client",
    "client.check_authn_complete": "client",
    "session.subscribed": "client",
    "session.unsubscribed": "client",
}


def test_event_catalogue(default_broker: Broker, nid: str, receivers: Any, mqtt_clients: Any) -> None:
    b = default_broker
    status, body = b.api("GET", "/api/v1/events")
    assert status == 200, body
    rows = body["data"]
    names = [e["name"] for e in rows]
    assert len(names) == len(set(names)), names
    assert set(names) == set(EMQX_EVENTS), sorted(set(names) ^ set(EMQX_EVENTS))
    for e in rows:
        assert set(e) == {"name", "kind", "fields"}, e
        assert e["kind"] == EMQX_EVENTS[e["name"]], e
        assert isinstance(e["fields"], list) and "clientid" in e["fields"], e
    publish = next(e for e in rows if e["name"] == "message.publish")
    assert {"id", "topic", "payload", "qos"} <= set(publish["fields"]), publish
    # every listed event name is accepted by a webhook, and the fields are what a receiver gets
    r = receivers()
    create(b, hook(nid, r.url(), None, events=names, topics=[f"{nid}/#"]))
    try:
        c = mqtt_clients(b, f"{nid}-ev")
        c.publish(f"{nid}/t", b"x", qos=1)
        ev = r.wait_event("message.publish", clientid=f"{nid}-ev")
        missing = [f for f in publish["fields"] if f.split(".")[0] not in ev]
        assert not missing, f"catalogue fields not in a real message.publish: {missing}; got {sorted(ev)}"
        conn = r.wait_event("client.connected", clientid=f"{nid}-ev")
        cat = next(e for e in rows if e["name"] == "client.connected")
        missing = [f for f in cat["fields"] if f.split(".")[0] not in conn]
        assert not missing, f"catalogue fields not in a real client.connected: {missing}; got {sorted(conn)}"
    finally:
        delete_quietly(b, nid)


def test_overview(default_broker: Broker, nid: str, mqtt_clients: Any) -> None:
    b = default_broker
    mqtt_clients(b, f"{nid}-ov")
    status, body = b.api("GET", "/api/v1/overview")
    assert status == 200, body
    keys = {
        "connections",
        "sessions",
        "subscriptions",
        "retained",
        "messages_in_rate",
        "messages_out_rate",
        "webhooks",
        "uptime_s",
        "node",
        "version",
    }
    assert set(body) >= keys, sorted(keys - set(body))
    assert set(body["webhooks"]) >= {"total", "enabled", "failing", "matched", "success", "failed", "dropped"}, body
    assert body["connections"] >= 1 and body["sessions"] >= 1, body
    assert body["uptime_s"] > 0 and isinstance(body["node"], str) and isinstance(body["version"], str), body
    n = body["webhooks"]["total"]
    create(b, hook(nid, "http://127.0.0.1:9/", nid, enable=False))
    try:
        w = b.api("GET", "/api/v1/overview")[1]["webhooks"]
        assert w["total"] == n + 1 and w["enabled"] <= w["total"] - 1, w
    finally:
        delete_quietly(b, nid)
