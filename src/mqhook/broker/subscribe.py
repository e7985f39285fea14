"""SUBSCRIBE and UNSUBSCRIBE handling (sections 3.8 to 3.11): per-filter reason codes, retained delivery."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mqhook.broker.authz import SUBSCRIBE
from mqhook.broker.message import SubOptions
from mqhook.errors import ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R
from mqhook.mqtt.topics import parse_shared, validate_topic_filter

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection


def _check_filter(conn: Connection, topic_filter: str) -> tuple[str | None, str, int]:
    """(group, real filter, 0) or (.., .., failure reason code) for one filter."""
    try:
        group, real = parse_shared(topic_filter)
        validate_topic_filter(real)
    except ProtocolError as exc:
        return None, topic_filter, exc.reason_code
    cfg = conn.config
    if group is not None and not cfg.shared_subscription_available:
        return group, real, R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
    if not cfg.wildcard_subscription_available and ("+" in real or "#" in real):
        return group, real, R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
    return group, real, 0


def handle_subscribe(conn: Connection, p: P.Subscribe) -> None:
    session = conn.session
    assert session is not None
    broker = conn.broker
    sub_id = p.properties.get("Subscription-Identifier")
    codes: list[int] = []
    retained: list[tuple[str, int, int | None]] = []
    for sub in p.subscriptions:
        group, real, failure = _check_filter(conn, sub.topic_filter)
        if failure:
            codes.append(failure)
            continue
        if group is not None and sub.no_local:
            raise ProtocolError(R.PROTOCOL_ERROR, "No Local on a shared subscription [MQTT-3.8.3-4]")
        if not conn._authorized(sub.topic_filter, SUBSCRIBE):
            codes.append(R.NOT_AUTHORIZED)
            continue
        qos = min(sub.qos, conn.config.max_qos)
        opts = SubOptions(sub.topic_filter, qos, sub.no_local, sub.retain_as_published, sub.retain_handling, sub_id)
        is_new = broker.subscribe(session, opts)
        codes.append(qos)
        hooks = broker.hooks
        if hooks.want_subscribed:
            hooks.session_subscribed(conn, sub.topic_filter, qos, p.properties)
        # Retained messages: not for shared subscriptions; Retain Handling 1 = only when new [MQTT-3.3.1-9..11].
        if group is None and (sub.retain_handling == 0 or (sub.retain_handling == 1 and is_new)):
            retained.append((real, qos, sub_id))
    conn._send(P.Suback(p.packet_id, codes))
    for real, qos, sid in retained:
        for msg in broker.retained_for(real):
            session.deliver(msg, min(qos, msg.qos), True, sid)


def handle_unsubscribe(conn: Connection, p: P.Unsubscribe) -> None:
    session = conn.session
    assert session is not None
    codes: list[int] = []
    for topic_filter in p.topic_filters:
        _, _, failure = _check_filter(conn, topic_filter)
        if failure and failure not in (R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED):
            codes.append(failure)
        else:
            removed = conn.broker.unsubscribe(session, topic_filter)
            if removed is None:
                codes.append(R.NO_SUBSCRIPTION_EXISTED)
                continue
            codes.append(R.SUCCESS)
            hooks = conn.broker.hooks
            if hooks.want_unsubscribed:
                hooks.session_unsubscribed(conn, topic_filter, removed.qos, p.properties)
    conn._send(P.Unsuback(p.packet_id, codes))
