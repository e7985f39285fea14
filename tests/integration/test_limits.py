"""README "Limits", with real sockets and clients: each limit bites only the client concerned, does
what the README says beyond it, and is counted in /api/v1/stats ``limits`` and in Prometheus
(``mqhook_limits_exceeded_total``). The memory attacks of issue 12 are replayed against the
defaults: each is refused early, and the broker's RSS stays far below what it grew before."""

from __future__ import annotations

import re
import socket
from typing import Any

from .pahoc import V5, V311
from .rawmqtt import (
    CONNACK,
    DISCONNECT,
    P_SESSION_EXPIRY,
    P_TOPIC_ALIAS,
    connect_packet,
    parse_connack,
    publish_packet,
    subscribe_packet,
)
from .util import wait_until


def limits(b: Any) -> dict[str, int]:
    return b.stats()["limits"]


def prometheus(b: Any, limit: str) -> float:
    status, body = b.http_get("/metrics")
    assert status == 200
    m = re.search(rf'^mqhook_limits_exceeded_total\{{limit="{limit}"\}} (\S+)$', body.decode(), re.M)
    assert m, f"no series for {limit}"
    return float(m.group(1))


# -- max_conn_rate_per_address ---------------------------------------------------------------------


def _connect_from(b: Any, source: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((source, 0))
    s.connect((b.host, b.mqtt_port))
    return s


def _connack_or_close(s: socket.socket, client_id: str) -> bytes:
    """Send a CONNECT; the CONNACK's bytes, or b"" if the broker closed without one."""
    try:
        s.sendall(connect_packet(client_id, version=4))
        return s.recv(4)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def test_connections_beyond_the_rate_of_one_address_are_closed_before_connect(broker, uid):
    b = broker("[mqtt]\nmax_conn_rate_per_address = 5\n")
    socks: list[socket.socket] = []
    try:
        answers = []
        for i in range(12):  # well within a second: at most 5 plus what refills meanwhile
            socks.append(_connect_from(b, "127.0.0.1"))
            answers.append(_connack_or_close(socks[-1], f"{uid}-{i}"))
        refused = answers.count(b"")
        assert answers[:5] == [b"\x20\x02\x00\x00"] * 5 and refused >= 5, answers
        assert set(answers) == {b"", b"\x20\x02\x00\x00"}
        # another source address has its own allowance (127.0.0.2 is loopback too on Linux)
        other = _connect_from(b, "127.0.0.2")
        socks.append(other)
        assert _connack_or_close(other, f"{uid}-other") == b"\x20\x02\x00\x00"
        assert b.wait_stat(("closed_before_connect", "connection_rate_exceeded"), lambda v: v == refused) == refused
        assert limits(b)["max_conn_rate_per_address"] == refused
        assert prometheus(b, "max_conn_rate_per_address") == refused
        # the address's allowance refills: a connection a moment later is accepted
        ok = wait_until(lambda: _connack_or_close(_keep(socks, _connect_from(b, "127.0.0.1")), f"{uid}-later"), 3)
        assert ok == b"\x20\x02\x00\x00"
    finally:
        for s in socks:
            s.close()


def _keep(socks: list[socket.socket], s: socket.socket) -> socket.socket:
    socks.append(s)
    return s


# -- messages_rate and bytes_rate --------------------------------------------------------------------


def test_a_client_over_messages_rate_is_slowed_not_dropped_and_others_are_not_slowed(broker, clients, uid):
    b = broker("[mqtt]\nmessages_rate = 20\n")
    sub = clients(b, f"{uid}-sub")
    sub.subscribe(f"{uid}/#", qos=0)
    fast = clients(b, f"{uid}-fast")
    for i in range(70):  # 3.5 windows' worth, sent at once
        fast.publish(f"{uid}/fast", b"%d" % i, wait=False)
    assert b.wait_stat(("paused_rate_limit",), lambda v: v == 1) == 1
    calm = clients(b, f"{uid}-calm")  # within its own allowance: never waits for the fast one
    for i in range(15):
        calm.publish(f"{uid}/calm", b"%d" % i, wait=False)
    sub.wait_for(lambda: sum(m.topic.endswith("/calm") for m in sub.received()) == 15, 5, "calm's messages")
    assert sum(m.topic.endswith("/fast") for m in sub.received()) < 70, "the fast publisher was not slowed"
    sub.wait_for(lambda: len(sub.received()) == 85, 10, "every message")
    fast_payloads = [m.payload for m in sub.received() if m.topic.endswith("/fast")]
    assert fast_payloads == [b"%d" % i for i in range(70)], "slowed, in order, nothing dropped"
    stats = b.stats()
    assert stats["limits"]["messages_rate"] >= 3 and stats["limits"]["bytes_rate"] == 0
    assert stats["messages_dropped"]["no_subscribers"] == 0 and stats["deliveries_dropped"]["qos0_msg"] == 0
    assert prometheus(b, "messages_rate") >= 3


def test_a_client_over_bytes_rate_is_slowed_and_gets_all_its_acks(broker, raw, uid):
    b = broker('[mqtt]\nbytes_rate = "8KB"\n')
    pub = raw(b, version=4)
    pub.connect(f"{uid}-pub")
    payload = b"b" * 1000
    pub.send(b"".join(publish_packet(f"{uid}/t", payload, qos=1, pid=i, version=4) for i in range(1, 25)))
    acks = [pub.expect(4, 10) for _ in range(24)]  # 24 KB at 8 KB/s: two windows' waits at least
    assert [a.body for a in acks] == [bytes([0, i]) for i in range(1, 25)]
    assert limits(b)["bytes_rate"] >= 2 and limits(b)["messages_rate"] == 0
    pub.ping()  # and the connection is still good


# -- max_subscriptions ----------------------------------------------------------------------------


def test_subscriptions_beyond_max_subscriptions_are_refused_per_client(broker, clients, raw, uid):
    b = broker("[mqtt]\nmax_subscriptions = 3\n")
    v5 = clients(b, f"{uid}-v5", protocol=V5)
    codes = v5.subscribe([(f"{uid}/a", 0), (f"{uid}/b", 1), (f"{uid}/c", 0), (f"{uid}/d", 0)])
    assert codes == [0, 1, 0, 0x97]  # quota exceeded
    assert v5.subscribe(f"{uid}/a", qos=1) == [1]  # replacing one of them is allowed
    v3 = clients(b, f"{uid}-v3", protocol=V311)
    assert v3.subscribe([(f"{uid}/a", 0), (f"{uid}/b", 0), (f"{uid}/c", 0), (f"{uid}/d", 1)]) == [0, 0, 0, 0x80]
    assert b.stats()["subscriptions"] == 6
    assert limits(b)["max_subscriptions"] == 2 and prometheus(b, "max_subscriptions") == 2


def test_300k_subscriptions_on_one_client_stop_at_the_default_bound(broker, raw, uid):
    """Issue 12: 300,000 subscriptions on one client grew the broker by 68 MB (220 MB in the issue's
    shape); by default a client holds at most 10,000."""
    b = broker()
    c = raw(b, version=5, timeout=30)
    c.connect(f"{uid}-subs")
    base = b.rss_kb()
    granted = 0
    for k in range(300):
        c.send(subscribe_packet(k + 1, [(f"{uid}/{k}/{j}/+", 0) for j in range(1000)], 5))
        body = c.expect(9, 30).body
        granted += sum(1 for code in body[3:] if code < 0x80)
    assert granted == 10_000
    assert b.stats()["limits"]["max_subscriptions"] == 290_000
    assert b.rss_kb() - base < 30_000, "RSS grew by more than 30 MB"


# -- max_topic_levels and max_topic_length ----------------------------------------------------------


def test_topics_over_the_levels_or_length_limit(broker, raw, uid):
    b = broker("[mqtt]\nmax_topic_levels = 4\nmax_topic_length = 64\n")
    deep = f"{uid[:10]}/a/b/c/d"
    v5 = raw(b, version=5)
    v5.connect(f"{uid}-v5")
    assert v5.subscribe([(f"{uid[:10]}/a/+/c", 0), (deep, 0), ("x" * 65, 0), ("$share/g/a/b/c/d", 0)]) == [
        0,
        0x8F,
        0x8F,
        0,
    ]
    v5.publish(f"{uid[:10]}/x/y/z", b"ok")  # 4 levels: fine
    v5.send(publish_packet(deep, b"too deep"))
    got = v5.wait_closed()
    assert [p.type for p in got] == [DISCONNECT] and got[0].body[0] == 0x90  # topic name invalid
    v3 = raw(b, version=4)
    v3.connect(f"{uid}-v3")
    assert v3.subscribe([("y" * 65, 0), (f"{uid[:10]}/ok", 1)]) == [0x80, 1]
    v3.send(publish_packet("z" * 65, b"too long", version=4))
    assert v3.wait_closed() == []
    stats = b.stats()
    assert stats["limits"]["max_topic_levels"] == 2 and stats["limits"]["max_topic_length"] == 3
    assert stats["disconnects"]["topic_name_invalid"] == 2


# -- memory an attacker controls ----------------------------------------------------------------------


def test_4000_distinct_60kb_topics_leave_no_memory_behind(broker, raw, uid):
    """Issue 12: the topic-name cache kept 4,096 topics whatever their size: 4,000 distinct 60 KB
    topics left +459 MB. Over the default max_topic_length (4096) the first closes the connection;
    with the protocol's 65535 allowed, long names are not cached at all."""
    b = broker("[mqtt]\nmax_topic_length = 65535\nmax_packet_size = 268435455\n")
    c = raw(b, version=4, timeout=60)
    c.connect(f"{uid}-cache")
    base = b.rss_kb()
    pad = "x" * 60_000
    for i in range(0, 4000, 100):
        c.send(b"".join(publish_packet(f"{pad}/{j}", b"", version=4) for j in range(i, i + 100)))
    c.ping(60)
    assert b.stat("messages_received", "0") == 4000
    assert b.rss_kb() - base < 60_000, "RSS grew by more than 60 MB"
    default = broker()
    d = raw(default, version=4)
    d.connect(f"{uid}-default")
    d.send(publish_packet(pad, b"", version=4))
    assert d.wait_closed() == [] and default.stats()["limits"]["max_topic_length"] == 1


def test_inbound_topic_aliases_are_bounded_by_bytes_per_connection(broker, raw, uid):
    """Issue 12: 2,000 aliases of 60 KB topics on one connection held +230 MB. Past
    max_topic_alias_bytes the connection is closed with DISCONNECT 0x94 (Topic Alias invalid)."""
    b = broker('[mqtt]\nmax_topic_length = 65535\nmax_topic_alias_bytes = "1MB"\n')
    c = raw(b, version=5, timeout=60)
    c.connect(f"{uid}-aliases")
    base = b.rss_kb()
    pad = "y" * 60_000
    try:
        for i in range(1, 2001, 50):
            c.send(b"".join(publish_packet(f"{pad}/{j}", properties=[(P_TOPIC_ALIAS, j)]) for j in range(i, i + 50)))
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed by the broker meanwhile
    got = c.wait_closed(30)
    assert got and got[-1].type == DISCONNECT and got[-1].body[0] == 0x94
    assert limits(b)["max_topic_alias_bytes"] == 1 and b.stats()["disconnects"]["topic_alias_invalid"] == 1
    assert b.rss_kb() - base < 40_000, "RSS grew by more than 40 MB"
    other = raw(b, version=5)  # the bound is per connection: another one sets its aliases
    other.connect(f"{uid}-other")
    other.send(publish_packet(f"{uid}/t", b"1", properties=[(P_TOPIC_ALIAS, 1)]))
    other.ping()


def test_retained_messages_beyond_the_count_are_not_retained_but_routed(broker, clients, uid):
    b = broker("[mqtt]\nmax_retained_messages = 5\n")
    live = clients(b, f"{uid}-live")
    live.subscribe(f"{uid}/#")
    pub = clients(b, f"{uid}-pub")
    for i in range(8):
        pub.publish(f"{uid}/r/{i}", b"%d" % i, qos=1, retain=True)
    live.wait_messages(8)
    late = clients(b, f"{uid}-late")
    late.subscribe(f"{uid}/#")
    late.wait_messages(5)
    assert sorted(m.payload for m in late.received()) == [b"%d" % i for i in range(5)]
    pub.publish(f"{uid}/r/0", b"", qos=1, retain=True)  # clearing one makes room
    pub.publish(f"{uid}/r/7", b"7", qos=1, retain=True)
    stats = b.stats()
    assert stats["retained"] == 5 and stats["limits"]["max_retained_messages"] == 3
    assert stats["retained_bytes"] == sum(len(f"{uid}/r/{i}") + 1 for i in (1, 2, 3, 4, 7))
    assert prometheus(b, "max_retained_messages") == 3


def test_retained_bytes_are_bounded(broker, raw, uid):
    """200,000 retained 1 KB messages grew the broker by 290 MB; max_retained_bytes bounds them."""
    b = broker('[mqtt]\nmax_retained_bytes = "4MB"\n')
    c = raw(b, version=4, timeout=60)
    c.connect(f"{uid}-retained")
    base = b.rss_kb()
    payload = b"r" * 1000
    for i in range(0, 20_000, 1000):
        c.send(b"".join(publish_packet(f"ret/{j}", payload, retain=True, version=4) for j in range(i, i + 1000)))
    c.ping(60)
    stats = b.stats()
    assert (4 << 20) - 1010 < stats["retained_bytes"] <= 4 << 20  # full to within one message
    assert stats["limits"]["max_retained_bytes"] == 20_000 - stats["retained"]
    assert b.rss_kb() - base < 20_000, "RSS grew by more than 20 MB"


def test_new_sessions_beyond_max_sessions_are_refused_with_a_connack(broker, raw, uid):
    b = broker("[mqtt]\nmax_sessions = 3\n")
    for i in range(3):  # sessions kept after their connections close
        c = raw(b, version=5)
        assert c.connect(f"{uid}-{i}", properties=[(P_SESSION_EXPIRY, 600)]).rc == 0
        c.disconnect()
        c.wait_closed()
    for version, code in ((5, 0x97), (4, 3)):
        extra = raw(b, version=version)
        extra.send(connect_packet(f"{uid}-extra-{version}", version=version))
        got = extra.wait_closed()
        assert [p.type for p in got] == [CONNACK] and parse_connack(got[0], version).rc == code
    again = raw(b, version=5)  # an existing session is no new one
    ack = again.connect(f"{uid}-0", clean=False)
    assert ack.rc == 0 and ack.session_present
    stats = b.stats()
    assert stats["sessions"] == 3 and stats["limits"]["max_sessions"] == 2
    assert stats["connects"]["quota_exceeded"] == 2


def test_the_limits_exist_at_zero_in_stats_and_prometheus(broker):
    b = broker()
    assert set(limits(b)) == {
        "max_conn_rate_per_address",
        "messages_rate",
        "bytes_rate",
        "max_subscriptions",
        "max_topic_levels",
        "max_topic_length",
        "max_topic_alias_bytes",
        "max_retained_messages",
        "max_retained_bytes",
        "max_sessions",
        "login_failures_per_address",
    }
    assert prometheus(b, "max_sessions") == 0 and b.stats()["paused_rate_limit"] == 0
