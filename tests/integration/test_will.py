"""Will messages: when they are (and are not) published; v5 will properties and Will Delay Interval."""

from __future__ import annotations

import time

import pytest

from .rawmqtt import (
    P_CONTENT_TYPE,
    P_CORRELATION_DATA,
    P_RESPONSE_TOPIC,
    P_SESSION_EXPIRY,
    P_USER_PROPERTY,
    P_WILL_DELAY,
    Will,
)


def will_client(raw, broker, client_id, topic, version=5, payload=b"gone", qos=1, retain=False, **kw):
    c = raw(broker, version=version)
    ack = c.connect(client_id, will=Will(topic, payload, qos=qos, retain=retain, props=kw.pop("will_props", [])), **kw)
    assert ack.rc == 0
    return c


@pytest.mark.parametrize("version", [4, 5])
def test_will_on_socket_close_without_disconnect(default_broker, raw, clients, uid, version):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=2)
    c = will_client(raw, default_broker, uid, topic, version=version, payload=b"bye", qos=1)
    c.close()
    (m,) = sub.wait_messages(1)
    assert (m.topic, m.payload, m.qos, m.retain) == (topic, b"bye", 1, False)


def test_will_on_connection_reset(default_broker, raw, clients, uid):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    c = will_client(raw, default_broker, uid, topic, version=4, qos=0)
    c.abort()
    (m,) = sub.wait_messages(1)
    assert (m.payload, m.qos) == (b"gone", 0)


@pytest.mark.parametrize("version", [4, 5])
def test_will_on_keepalive_timeout(default_broker, raw, clients, uid, version):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    t0 = time.monotonic()
    c = will_client(raw, default_broker, uid, topic, version=version, keepalive=1)
    (m,) = sub.wait_messages(1, timeout=4)
    assert m.payload == b"gone"
    assert time.monotonic() - t0 >= 1.0
    c.wait_closed(2)


def test_will_on_protocol_error(default_broker, raw, clients, uid):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    c = will_client(raw, default_broker, uid, topic, version=4)
    c.send(b"\x36\x05\x00\x01a\x00\x01")  # PUBLISH with QoS 3: malformed
    c.wait_closed(3)
    (m,) = sub.wait_messages(1)
    assert m.payload == b"gone"


@pytest.mark.parametrize(("version", "rc"), [(4, 0), (5, 0), (5, 0x80)], ids=["v311", "v5-normal", "v5-0x80"])
def test_no_will_on_normal_disconnect(default_broker, raw, clients, uid, version, rc):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    a = will_client(raw, default_broker, uid + "-a", topic, version=version, payload=b"A")
    a.disconnect(rc)  # any DISCONNECT other than v5 0x04 deletes the will [MQTT-3.1.2-10]
    a.wait_closed(3)
    # barrier: a second client's will on the same topic
    b = will_client(raw, default_broker, uid + "-b", topic, version=version, payload=b"B")
    b.close()
    sub.wait_payload(b"B")
    sub.assert_no_message(0.3)
    assert [m.payload for m in sub.received()] == [b"B"]


def test_v5_disconnect_with_will_message_reason(default_broker, raw, clients, uid):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    c = will_client(raw, default_broker, uid, topic, version=5, payload=b"asked")
    c.disconnect(0x04)  # Disconnect with Will Message
    c.wait_closed(3)
    (m,) = sub.wait_messages(1)
    assert m.payload == b"asked"


def test_will_retained(default_broker, raw, clients, uid):
    topic = f"{uid}/will"
    c = will_client(raw, default_broker, uid, topic, version=4, payload=b"last", retain=True)
    live = clients(default_broker, uid + "-live")
    live.subscribe(topic, qos=1)
    c.close()
    live.wait_messages(1)
    late = clients(default_broker, uid + "-late")
    late.subscribe(topic, qos=1)
    (m,) = late.wait_messages(1)
    assert (m.payload, m.retain) == (b"last", True)


def test_v5_will_properties_forwarded(default_broker, raw, clients, uid):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    will_props = [
        (P_CONTENT_TYPE, "text/plain"),
        (P_RESPONSE_TOPIC, f"{uid}/resp"),
        (P_CORRELATION_DATA, b"\x00\x01corr"),
        (P_USER_PROPERTY, ("k1", "v1")),
        (P_USER_PROPERTY, ("k2", "v2")),
    ]
    c = will_client(raw, default_broker, uid, topic, will_props=will_props)
    c.close()
    (m,) = sub.wait_messages(1)
    assert m.props.get("ContentType") == "text/plain"
    assert m.props.get("ResponseTopic") == f"{uid}/resp"
    assert m.props.get("CorrelationData") == b"\x00\x01corr"
    assert m.props.get("UserProperty") == [("k1", "v1"), ("k2", "v2")]
    assert "WillDelayInterval" not in m.props


@pytest.mark.slow
def test_will_delay_interval(default_broker, raw, clients, uid):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    c = will_client(
        raw,
        default_broker,
        uid,
        topic,
        properties=[(P_SESSION_EXPIRY, 60)],
        will_props=[(P_WILL_DELAY, 2)],
    )
    c.close()
    t0 = time.monotonic()
    sub.assert_no_message(1.3)  # the delay has not passed
    (m,) = sub.wait_messages(1, timeout=4)
    assert m.payload == b"gone"
    assert m.at - t0 >= 1.5, f"will arrived {m.at - t0:.2f}s after the close, delay is 2s"


@pytest.mark.slow
def test_will_delay_cancelled_by_reconnect(default_broker, raw, clients, uid):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    c = will_client(
        raw,
        default_broker,
        uid,
        topic,
        properties=[(P_SESSION_EXPIRY, 60)],
        will_props=[(P_WILL_DELAY, 2)],
    )
    c.close()
    again = raw(default_broker)
    ack = again.connect(uid, clean=False, properties=[(P_SESSION_EXPIRY, 60)])
    assert ack.rc == 0
    assert ack.session_present is True
    sub.assert_no_message(3.0)  # past the 2 s delay: no will
    again.disconnect()
    again.wait_closed(3)


def test_will_delay_ends_with_session_expiry_zero(default_broker, raw, clients, uid):
    """The will is sent when the delay passes or the session ends, whichever is first."""
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    c = will_client(raw, default_broker, uid, topic, will_props=[(P_WILL_DELAY, 30)])  # session expiry 0
    c.close()
    (m,) = sub.wait_messages(1, timeout=3)
    assert m.payload == b"gone"


def test_will_delay_ends_when_clean_start_replaces_session(default_broker, raw, clients, uid):
    topic = f"{uid}/will"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    c = will_client(
        raw,
        default_broker,
        uid,
        topic,
        properties=[(P_SESSION_EXPIRY, 60)],
        will_props=[(P_WILL_DELAY, 30)],
    )
    c.close()
    again = raw(default_broker)
    ack = again.connect(uid, clean=True)  # a new session: the old one ends, its will goes out
    assert ack.session_present is False
    (m,) = sub.wait_messages(1, timeout=3)
    assert m.payload == b"gone"
