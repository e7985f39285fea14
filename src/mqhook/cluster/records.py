"""The session owners' records and messages (``mqhook.cluster.sessions``), as pure functions:
the KV key of a client id, the control subjects of a node, a will as the KV holds it, and a
session's state as a takeover hands it from one node to another (times as wall clock, so the
nodes' clocks need only roughly agree)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import msgspec

from mqhook.broker.connect import NEVER_EXPIRES
from mqhook.broker.message import Message, SubIds, SubOptions
from mqhook.cluster.subjects import decode_level, encode_level
from mqhook.persist.store import decode_entry, encode_entry, wall_offset

if TYPE_CHECKING:
    from mqhook.broker.session import Session
    from mqhook.mqtt.packets import Will

__all__ = [
    "alive_subject",
    "client_key",
    "control_subject",
    "encode_will",
    "export_session",
    "imported_session",
    "key_client",
    "will_message",
]

MAX_KEY = 2000  # longer encoded client ids are keyed by their hash

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def client_key(client_id: str) -> str:
    """The KV key of a client id: injective, a valid key for any id."""
    token = encode_level(client_id)
    if len(token) <= MAX_KEY:
        return "c." + token
    return "h." + hashlib.sha256(client_id.encode("utf-8", "surrogatepass")).hexdigest()


def key_client(key: str) -> str | None:
    """The client id of a ``c.`` key (None for a hashed one)."""
    return decode_level(key[2:]) if key.startswith("c.") else None


def control_subject(node: str) -> str:
    return f"mqhook.ctl.{encode_level(node)}.takeover"


def alive_subject(node: str) -> str:
    return f"mqhook.ctl.{encode_level(node)}.alive"


def encode_will(will: Will, username: str | None) -> bytes:
    return _encode([will.topic, will.payload, will.qos, will.retain, will.properties, username])


def will_message(client_id: str, blob: bytes, now: float) -> Message:
    """The message of a stored will, as ``Broker.fire_will`` makes it."""
    topic, payload, qos, retain, props, username = _decode(blob)
    props = {k: v for k, v in props.items() if k != "Will-Delay-Interval"}
    if "User-Property" in props:
        props["User-Property"] = [tuple(p) for p in props["User-Property"]]
    expiry = props.get("Message-Expiry-Interval")
    return Message(topic, payload, qos, retain, props, client_id, None if expiry is None else now + expiry, username)


def export_session(session: Session, clock_now: float) -> list[Any]:
    """The state a takeover hands to the new owner (times as wall clock)."""
    offset = wall_offset(clock_now)
    subs = [
        [o.topic_filter, o.qos, o.no_local, o.rap, o.retain_handling, o.sub_id] for o in session.subscriptions.values()
    ]
    queue = [encode_entry(m, q, r, s, offset) for m, q, r, s in session.queue or ()]
    inflight = [
        [pid, out.state, encode_entry(out.msg, out.qos, out.retain, out.sub_id, offset)]
        for pid, out in session.inflight.items()
    ]
    return [session.expiry_interval, subs, queue, inflight, sorted(session.awaiting_rel)]


def imported_session(
    state: list[Any], clock_now: float
) -> tuple[
    int,
    float | None,
    list[SubOptions],
    list[tuple[Message, int, bool, SubIds]],
    int,
    dict[int, tuple[Message, int, bool, SubIds, int]],
    list[int],
]:
    """``export_session``'s state as the arguments of ``Broker.restore_session`` after the client id."""
    expiry, subs, queue, inflight, awaiting = state
    offset = wall_offset(clock_now)
    return (
        expiry,
        None if expiry == NEVER_EXPIRES else float(expiry),
        [SubOptions(*s) for s in subs],
        [decode_entry(b, offset) for b in queue],
        0,
        {pid: (*decode_entry(b, offset), st) for pid, st, b in inflight},
        list(awaiting),
    )
