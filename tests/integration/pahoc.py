"""paho-mqtt 2.x wrappers whose every wait is an Event/Condition with a bounded timeout."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

V31, V311, V5 = mqtt.MQTTv31, mqtt.MQTTv311, mqtt.MQTTv5
WAIT = 5.0


def make_props(packet_type: int, **values: Any) -> Properties:
    """``make_props(PacketTypes.PUBLISH, UserProperty=[("a", "1")], ContentType="x")``."""
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


def props_dict(p: Properties | None) -> dict[str, Any]:
    if p is None:
        return {}
    out = {}
    for name in p.names:
        key = name.replace(" ", "")
        if hasattr(p, key):
            out[key] = getattr(p, key)
    return out


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    props: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


@dataclass
class WillSpec:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    props: dict[str, Any] | None = None


class Client:
    """A connected paho client (loop thread running) recording everything it receives."""

    def __init__(
        self,
        broker: Any,
        client_id: str,
        protocol: int = V5,
        clean: bool = True,
        keepalive: int = 60,
        connect_props: dict[str, Any] | None = None,
        will: WillSpec | None = None,
        expect_rc: int | None = 0,
        timeout: float = WAIT,
    ) -> None:
        self.protocol = protocol
        self.client_id = client_id
        kw: dict[str, Any] = {}
        if protocol != V5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            reconnect_on_failure=False,
            **kw,
        )
        self.cond = threading.Condition()
        self.messages: list[Msg] = []
        self.subacks: dict[int, list[int]] = {}
        self.unsubacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.disconnect_rc: int | None = None
        self.disconnect_props: dict[str, Any] = {}
        self.connack_rc: int | None = None
        self.session_present = False
        self.connack_props: dict[str, Any] = {}
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_publish = self._on_publish
        if will is not None:
            wp = make_props(PacketTypes.WILLMESSAGE, **will.props) if will.props else None
            self.c.will_set(will.topic, will.payload, will.qos, will.retain, properties=wp)
        ckw: dict[str, Any] = {}
        if protocol == V5:
            ckw["clean_start"] = clean
            if connect_props:
                ckw["properties"] = make_props(PacketTypes.CONNECT, **connect_props)
        self.c.connect(broker.host, broker.mqtt_port, keepalive=keepalive, **ckw)
        self.c.loop_start()
        if not self.connected.wait(timeout) and not self.disconnected.is_set():
            self.close()
            raise AssertionError(f"{client_id}: no CONNACK within {timeout}s")
        if expect_rc is not None and self.connack_rc != expect_rc:
            self.close()
            raise AssertionError(f"{client_id}: CONNACK reason {self.connack_rc!r}, expected {expect_rc}")

    # -- callbacks (loop thread) -------------------------------------------------------
    def _on_connect(self, c: Any, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack_rc = rc.value if hasattr(rc, "value") else int(rc)
        self.session_present = bool(flags.session_present)
        self.connack_props = props_dict(props)
        self.connected.set()

    def _on_disconnect(self, c: Any, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnect_rc = rc.value if hasattr(rc, "value") else int(rc)
        self.disconnect_props = props_dict(props)
        self.disconnected.set()
        self.connected.set()  # unblock a constructor waiting for a CONNACK that never comes
        with self.cond:
            self.cond.notify_all()

    def _on_message(self, c: Any, ud: Any, m: Any) -> None:
        msg = Msg(m.topic, bytes(m.payload), m.qos, bool(m.retain), bool(m.dup), m.mid)
        msg.props = props_dict(getattr(m, "properties", None))
        msg.at = time.monotonic()
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def _on_subscribe(self, c: Any, ud: Any, mid: int, codes: list[Any], props: Any) -> None:
        with self.cond:
            self.subacks[mid] = [rc.value if hasattr(rc, "value") else int(rc) for rc in codes]
            self.cond.notify_all()

    def _on_unsubscribe(self, c: Any, ud: Any, mid: int, codes: list[Any], props: Any) -> None:
        with self.cond:
            self.unsubacks[mid] = [rc.value if hasattr(rc, "value") else int(rc) for rc in codes]
            self.cond.notify_all()

    def _on_publish(self, c: Any, ud: Any, mid: int, rc: Any, props: Any) -> None:
        with self.cond:
            self.pubacks[mid] = rc.value if hasattr(rc, "value") else int(rc)
            self.cond.notify_all()

    # -- waiting -------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(
                    f"{self.client_id}: timed out after {timeout}s waiting for {what}; "
                    f"received {[(m.topic, m.payload[:40]) for m in self.messages][:20]}"
                )

    def wait_messages(self, n: int, timeout: float = WAIT) -> list[Msg]:
        """Wait until at least ``n`` messages have arrived; returns a copy of all messages."""
        self.wait_for(lambda: len(self.messages) >= n, timeout, f"{n} messages")
        with self.cond:
            return list(self.messages)

    def wait_topic(self, topic: str, timeout: float = WAIT) -> Msg:
        self.wait_for(lambda: any(m.topic == topic for m in self.messages), timeout, f"a message on {topic!r}")
        with self.cond:
            return next(m for m in self.messages if m.topic == topic)

    def wait_payload(self, payload: bytes, timeout: float = WAIT) -> Msg:
        self.wait_for(lambda: any(m.payload == payload for m in self.messages), timeout, f"payload {payload!r}")
        with self.cond:
            return next(m for m in self.messages if m.payload == payload)

    def received(self) -> list[Msg]:
        with self.cond:
            return list(self.messages)

    def clear(self) -> None:
        with self.cond:
            self.messages.clear()

    def assert_no_message(self, duration: float = 0.3) -> None:
        """Negative check: nothing arrives for ``duration`` (use after a barrier when possible)."""
        with self.cond:
            before = len(self.messages)
            self.cond.wait_for(lambda: len(self.messages) > before, duration)
            extra = self.messages[before:]
        assert not extra, f"unexpected messages: {[(m.topic, m.payload[:40]) for m in extra]}"

    # -- actions -------------------------------------------------------------------------
    def subscribe(
        self,
        topic: str | list[tuple[str, int]],
        qos: int = 0,
        no_local: bool = False,
        rap: bool = False,
        rh: int = 0,
        sub_id: int | None = None,
        timeout: float = WAIT,
    ) -> list[int]:
        """Subscribe and wait for the SUBACK; returns its reason codes (granted QoS or error)."""
        properties = make_props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id) if sub_id else None
        if isinstance(topic, list):
            if self.protocol == V5:
                arg: Any = [(t, SubscribeOptions(qos=q)) for t, q in topic]
            else:
                arg = topic
            rc, mid = self.c.subscribe(arg, properties=properties)
        elif self.protocol == V5:
            opts = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=rh)
            rc, mid = self.c.subscribe(topic, options=opts, properties=properties)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        self.wait_for(lambda: mid in self.subacks or self.disconnected.is_set(), timeout, "SUBACK")
        assert mid in self.subacks, f"disconnected before SUBACK (rc {self.disconnect_rc})"
        return self.subacks[mid]

    def unsubscribe(self, topics: str | list[str], timeout: float = WAIT) -> list[int]:
        rc, mid = self.c.unsubscribe(topics)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        self.wait_for(lambda: mid in self.unsubacks, timeout, "UNSUBACK")
        return self.unsubacks[mid]

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        props: dict[str, Any] | None = None,
        wait: bool = True,
        timeout: float = WAIT,
    ) -> int:
        """Publish; with ``wait`` block until written (QoS 0) or acknowledged (QoS 1/2).
        Returns the mid; the PUBACK/PUBCOMP reason code is in ``self.pubacks[mid]``."""
        p = make_props(PacketTypes.PUBLISH, **props) if props else None
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=p)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        if wait:
            self.wait_for(lambda: info.mid in self.pubacks, timeout, f"ack of publish {info.mid}")
        return info.mid

    def round_trip(self, topic: str, timeout: float = WAIT) -> None:
        """Health check: this client must be subscribed to ``topic``; publish and receive it."""
        payload = f"ping-{time.monotonic_ns()}".encode()
        self.publish(topic, payload, qos=1)
        self.wait_payload(payload, timeout)

    def disconnect(self, rc: int | None = None, props: dict[str, Any] | None = None, timeout: float = WAIT) -> None:
        """Graceful DISCONNECT, then wait for the loop to see the close."""
        kw: dict[str, Any] = {}
        if rc is not None:
            from paho.mqtt.reasoncodes import ReasonCode

            kw["reasoncode"] = ReasonCode(PacketTypes.DISCONNECT, identifier=rc)
        if props:
            kw["properties"] = make_props(PacketTypes.DISCONNECT, **props)
        self.c.disconnect(**kw)
        self.disconnected.wait(timeout)
        self.c.loop_stop()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if not self.disconnected.is_set():
                self.c.disconnect()
                self.disconnected.wait(2)
        self.c.loop_stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Clients:
    """Test-scoped registry so every client is closed even when an assertion fails."""

    def __init__(self) -> None:
        self.all: list[Client] = []

    def __call__(self, broker: Any, client_id: str, **kw: Any) -> Client:
        c = Client(broker, client_id, **kw)
        self.all.append(c)
        return c

    def close_all(self) -> None:
        for c in self.all:
            c.close()
