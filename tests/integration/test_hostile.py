"""Hostile and broken peers at the edge: what a peer that has not connected may cost, what is handled
before a fault, and a close the peer can read (issue 10: the edge under load and hostile clients)."""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import ADMIN_PASSWORD, LISTENING_RE, admin_get, broker_env

from .rawmqtt import (
    CONNACK,
    DISCONNECT,
    PUBACK,
    PUBREC,
    RawClient,
    connect_packet,
    parse_ack,
    parse_disconnect,
    publish_packet,
    varint,
)
from .util import wait_until


def _read_until_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the broker sends until its FIN; a reset (the kernel destroying unread data) fails."""
    sock.settimeout(timeout)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)  # ConnectionResetError here is the failure this module is about
        if not chunk:
            return bytes(data)
        data += chunk
    raise AssertionError(f"no EOF within {timeout}s; got {bytes(data[:40]).hex()}")


@pytest.mark.parametrize("level", [6, 9, 255])
def test_an_unsupported_protocol_level_gets_connack_0x01_then_the_close(broker, uid, level):
    b = broker()
    with socket.create_connection((b.host, b.mqtt_port)) as sock:
        sock.sendall(connect_packet(uid, version=4).replace(b"MQTT\x04", b"MQTT" + bytes([level])))
        # 3.1.1's CONNACK, return code 1: unacceptable protocol version [MQTT-3.1.2-2]
        assert _read_until_eof(sock) == b"\x20\x02\x00\x01"
    assert b.wait_stat(("connects", "unsupported_protocol_version"), lambda v: v == 1) == 1


def test_a_connect_over_max_connect_size_is_refused_before_it_is_read(broker, raw):
    b = broker("[mqtt]\nmax_connect_size = 4096\n")
    c = raw(b, version=4)
    c.send(b"\x10" + varint(1_000_000))  # announces a 1 MB CONNECT, sends none of it
    assert c.wait_closed(3) == []
    assert b.wait_stat(("closed_before_connect", "packet_too_large"), lambda v: v == 1) == 1
    assert b.stat("connects", "success") == 0


def test_a_connect_at_max_connect_size_is_served(broker, raw, uid):
    b = broker("[mqtt]\nmax_connect_size = 4096\n")
    head = len(connect_packet(uid, version=4, username=""))
    username = "u" * (4096 - head - 1)  # exactly 4096 bytes: the remaining length takes one more byte
    data = connect_packet(uid, version=4, username=username)
    assert len(data) == 4096
    c = raw(b, version=4)
    c.send(data)
    assert c.expect(CONNACK).body == b"\x00\x00"
    over = raw(b, version=4)
    over.send(connect_packet(uid, version=4, username=username + "u"))
    assert over.wait_closed(3) == []


def test_a_socket_that_never_connects_is_closed_and_counted(broker, raw):
    b = broker("[mqtt]\nidle_timeout = 0.3\n")
    c = raw(b, version=4)
    c.send(connect_packet("never", version=4)[:5])  # half a CONNECT
    assert c.wait_closed(3) == []
    assert b.wait_stat(("closed_before_connect", "connect_timeout"), lambda v: v == 1) == 1


@pytest.mark.parametrize("version", [4, 5])
def test_packets_before_a_malformed_one_in_the_same_read_are_handled(broker, raw, uid, version):
    b = broker()
    sub = raw(b, version=version)
    assert sub.connect(uid + "-sub").rc == 0
    sub.subscribe("fault/#", qos=1)
    pub = raw(b, version=version)
    assert pub.connect(uid).rc == 0
    good = publish_packet("fault/1", b"before the fault", qos=1, pid=7, version=version)
    pub.send(good + b"\x30\xff\xff\xff\xff\x7f")  # then a remaining length of five bytes
    got = pub.wait_closed(3)
    assert got[0].type == PUBACK and parse_ack(got[0], version)[0] == 7  # acknowledged, then closed
    if version == 5:
        assert got[-1].type == DISCONNECT and parse_disconnect(got[-1])[0] == 0x81
    assert sub.recv_publish().payload == b"before the fault"  # and routed


def test_a_v5_disconnect_is_readable_although_the_client_sent_more(broker, uid):
    b = broker("[mqtt]\nreceive_maximum = 4\n")
    with socket.create_connection((b.host, b.mqtt_port)) as sock:
        sock.sendall(connect_packet(uid, version=5))
        # 5 unacknowledged QoS 2 PUBLISHes (one more than Receive Maximum), and more behind them,
        # so the broker closes with input it never read.
        flood = b"".join(publish_packet("qos2", b"x" * 1000, qos=2, pid=i, version=5) for i in range(1, 200))
        sock.sendall(flood)
        data = _read_until_eof(sock)
    kinds = []
    pos = 0
    while pos < len(data):  # split into packets: type nibble, remaining length, body
        first = data[pos]
        length, shift, i = 0, 0, pos + 1
        while True:
            length |= (data[i] & 0x7F) << shift
            shift += 7
            i += 1
            if data[i - 1] < 0x80:
                break
        kinds.append((first >> 4, data[i : i + length]))
        pos = i + length
    assert [k for k, _ in kinds] == [CONNACK, PUBREC, PUBREC, PUBREC, PUBREC, DISCONNECT]
    assert kinds[-1][1][0] == 0x93  # receive maximum exceeded, and the client read it
    assert b.wait_stat(("disconnects", "receive_maximum_exceeded"), lambda v: v == 1) == 1


def test_a_client_that_never_reads_is_not_read_either(broker, uid):
    """Issue 10, defect 3: PINGREQs sent by a client that reads none of the PINGRESPs must not grow
    the broker: once its write buffer is full, the broker reads no more from it (before: the broker
    read all 200 MB and buffered the answers). Unit tests check the pause itself and its gauge
    (tests/unit/test_flow.py): here the kernel may also stall the sender first."""
    b = broker("[mqtt]\nwrite_buffer_high = 65536\n")
    sock = socket.create_connection((b.host, b.mqtt_port))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(connect_packet(uid, version=4, keepalive=0))
        chunk = b"\xc0\x00" * 32768
        sock.settimeout(2.0)  # a send that cannot finish in 2 s: the broker stopped reading
        sent = 0
        with pytest.raises(TimeoutError):
            while sent < 200_000_000:  # bounded: a broker reading everything fails the assertion below
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 50_000_000, f"the broker read {sent} bytes from a client that reads nothing"
        assert b.alive() and b.stat("bytes_received") < 20_000_000
    finally:
        sock.close()
    assert b.wait_stat(("paused_write_buffer_full",), lambda v: v == 0) == 0


@pytest.mark.parametrize("version", [4, 5])
def test_connects_beyond_max_connections_are_refused_with_a_connack_and_counted(broker, raw, uid, version):
    b = broker("[mqtt]\nmax_connections = 3\n")
    held = [raw(b, version=version) for _ in range(3)]
    for i, c in enumerate(held):
        assert c.connect(f"{uid}-{i}").rc == 0
    extra = raw(b, version=version)
    extra.send(connect_packet(f"{uid}-extra", version=version))
    got = extra.wait_closed(3)
    assert len(got) == 1 and got[0].type == CONNACK
    assert got[0].body[1] == (0x97 if version == 5 else 0x03)  # quota exceeded; 3.1.1: server unavailable
    assert b.wait_stat(("connects", "quota_exceeded"), lambda v: v == 1) == 1
    held[0].disconnect()
    assert b.wait_stat(("sockets",), lambda v: v == 2) == 2
    again = raw(b, version=version)
    assert again.connect(f"{uid}-again").rc == 0  # room again


def test_the_open_file_limit_is_raised_and_sets_max_connections(uid, tmp_path):
    """Issue 10, defect 5: started under `ulimit -n 64` with a hard limit of 1024, mqhook raises its
    limit to 1024 and allows 1024 - 128 MQTT connections; clients beyond are refused, never closed
    silently, and the admin API keeps answering."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 1024))

    cmd = [sys.executable, "-m", "mqhook", "run", "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [*cmd, "--data-dir", str(tmp_path / "data")],
        env=broker_env({"MQHOOK_ADMIN__DEFAULT_PASSWORD": ADMIN_PASSWORD}),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=limits,
    )
    try:
        assert proc.stderr is not None
        m = None
        for _ in range(5):  # the log line about the limit comes first
            m = LISTENING_RE.search(proc.stderr.readline())
            if m:
                break
        assert m, "the broker did not start"
        host, port, ahost, aport = m.group(1), int(m.group(2)), m.group(3), int(m.group(4))
        stats = admin_get(f"{ahost}:{aport}", "/api/v1/stats")
        assert stats["max_connections"] == 1024 - 128
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 2048 <= hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))  # room for this test's own 900 sockets
        socks = []
        try:  # 900 connections, one after the other: 896 accepted, then refusals with a CONNACK
            results = []
            for i in range(900):
                s = socket.create_connection((host, port))
                s.sendall(connect_packet(f"{uid}-{i}", version=4))
                s.settimeout(5)
                results.append(s.recv(4))
                socks.append(s)
            assert results[:896] == [b"\x20\x02\x00\x00"] * 896
            assert results[896:] == [b"\x20\x02\x00\x03"] * 4
        finally:
            for s in socks:
                s.close()
        with urllib.request.urlopen(f"http://{ahost}:{aport}/healthz", timeout=5) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


# -- issue 13: hostile clients beside well-behaved ones ---------------------------------------------
# Each attack runs beside a paho publisher and subscriber (``_Pair``) that must complete a QoS 1 round
# trip while it goes on and after it. Counts and times are bounded; everything is on 127.0.0.1.


class _Pair:
    """A paho subscriber and publisher: ``round_trip()`` publishes QoS 1 and waits for the copy."""

    def __init__(self, clients, b, uid: str) -> None:
        self.topic = f"healthy/{uid}"
        self.sub = clients(b, uid + "-sub")
        assert self.sub.subscribe(self.topic + "/#", qos=1) == [1]
        self.pub = clients(b, uid + "-pub")
        self.n = 0

    def round_trip(self, timeout: float = 5.0) -> None:
        self.n += 1
        payload = f"round-trip-{self.n}".encode()
        self.pub.publish(f"{self.topic}/{self.n}", payload, qos=1, timeout=timeout)
        self.sub.wait_payload(payload, timeout=timeout)
        assert not self.sub.disconnected.is_set() and not self.pub.disconnected.is_set()


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the broker closed ``sock`` (EOF or reset; pending input is read and dropped)."""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_2000_sockets_that_never_connect_are_closed_at_the_deadline(broker, clients, uid):
    b = broker("[mqtt]\nidle_timeout = 2\n")
    pair = _Pair(clients, b, uid)
    _raise_nofile(2000 + 512)
    socks: list[socket.socket] = []
    try:
        started = time.monotonic()
        for _ in range(2000):
            socks.append(socket.create_connection((b.host, b.mqtt_port), timeout=5))
        opened = time.monotonic() - started
        assert b.wait_stat(("sockets",), lambda v: v >= 2002, timeout=10) >= 2002  # all accepted, the pair too
        pair.round_trip()  # during: 2,000 idle sockets cost the others nothing
        assert b.stat("closed_before_connect", "connect_timeout") == 0
        closed = b.wait_stat(("closed_before_connect", "connect_timeout"), lambda v: v == 2000, timeout=opened + 10)
        assert closed == 2000
        elapsed = time.monotonic() - started
        assert elapsed >= 2.0, "closed before the CONNECT deadline"
        assert wait_until(lambda: all(_closed_by_peer(s) for s in socks), timeout=5)
        assert b.wait_stat(("sockets",), lambda v: v == 2, timeout=5) == 2
    finally:
        for s in socks:
            s.close()
    pair.round_trip()  # after
    assert b.stat("connects", "success") == 2


def test_random_bytes_on_300_sockets_close_each_offender_only(broker, clients, uid):
    """Random bytes from 300 sockets: 100 before any CONNECT, 100 after a valid 3.1.1 CONNECT, 100 after
    a v5 one (keepalive 1 s, so even bytes that leave a packet unfinished end at the keepalive).
    Every one is closed by the broker; the pair never notices."""
    import random

    rng = random.Random(13)
    b = broker("[mqtt]\nidle_timeout = 2\n")
    pair = _Pair(clients, b, uid)
    socks: list[socket.socket] = []
    try:
        for i in range(300):
            s = socket.create_connection((b.host, b.mqtt_port), timeout=5)
            socks.append(s)
            junk = rng.randbytes(rng.randint(1, 3000))
            if i % 3 == 1:
                junk = connect_packet(f"{uid}-r{i}", version=4, keepalive=1) + junk
            elif i % 3 == 2:
                junk = connect_packet(f"{uid}-r{i}", version=5, keepalive=1) + junk
            elif i % 6 == 0:
                junk = b"\x10" + junk  # a CONNECT type byte first, so the rest is parsed as one
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(junk)
            if i % 100 == 50:
                pair.round_trip()  # during
        assert wait_until(lambda: all(_closed_by_peer(s) for s in socks), timeout=10, interval=0.2), (
            f"{sum(not _closed_by_peer(s) for s in socks)} sockets still open"
        )
    finally:
        for s in socks:
            s.close()
    assert b.wait_stat(("sockets",), lambda v: v == 2, timeout=5) == 2
    pair.round_trip()  # after
    assert b.alive()


def _flood(b, client_id: str, topic: str, total_bytes: int, payload: bytes, errors: list[BaseException]) -> None:
    """QoS 0 PUBLISHes on a raw socket as fast as the broker reads them, then a PINGREQ: its
    PINGRESP says every one was read."""
    try:
        pub = RawClient(b.host, b.mqtt_port, version=5, timeout=30)
        try:
            assert pub.connect(client_id, keepalive=0).rc == 0
            batch = b"".join(publish_packet(topic, payload, version=5) for _ in range(100))
            for _ in range(max(1, total_bytes // len(batch))):
                pub.send(batch)
            pub.ping(timeout=30)
        finally:
            pub.close()
    except BaseException as exc:
        errors.append(exc)


def test_a_publish_flood_from_one_client_does_not_starve_the_others(broker, clients, uid):
    """One client sends 64 MB of QoS 0 PUBLISHes (no subscriber: each is counted and dropped) as
    fast as TCP lets it; the pair's round trips meanwhile each finish within a second."""
    b = broker()
    pair = _Pair(clients, b, uid)
    errors: list[BaseException] = []
    flooder = threading.Thread(
        target=_flood, args=(b, uid + "-flood", "flood/x", 64 << 20, b"f" * 200, errors), daemon=True
    )
    flooder.start()
    try:
        assert b.wait_stat(("bytes_received",), lambda v: v > 4 << 20, timeout=10) > 4 << 20
        rounds = 0
        while flooder.is_alive() and rounds < 20:
            started = time.monotonic()
            pair.round_trip(timeout=5)  # during
            assert time.monotonic() - started < 1.0, "a round trip took over a second during the flood"
            rounds += 1
        assert rounds >= 1
    finally:
        flooder.join(60)
    assert not flooder.is_alive() and not errors, errors
    assert b.stat("bytes_received") >= 63 << 20  # all of it was read (the PINGRESP came back)
    pair.round_trip()  # after
    assert b.alive()


def test_a_subscriber_that_never_reads_keeps_the_broker_rss_bounded(broker, clients, uid):
    """A QoS 0 subscriber with a 4 KB receive buffer that reads nothing after its SUBACK, under a
    64 MB flood on its filter: the broker drops (and counts) what it cannot write, its RSS grows by
    less than 100 MB (read from /proc/PID/status during the flood), and the pair keeps working."""
    b = broker("[mqtt]\nwrite_buffer_high = 262144\n")
    pair = _Pair(clients, b, uid)
    stuck = RawClient(b.host, b.mqtt_port, version=4, rcvbuf=4096)
    stuck.send(connect_packet(uid + "-stuck", version=4, keepalive=0))
    stuck.expect(CONNACK)
    assert stuck.subscribe("stuck/#", qos=0) == [0]
    base = b.rss_kb()
    peak = base
    errors: list[BaseException] = []
    flooder = threading.Thread(
        target=_flood, args=(b, uid + "-flood", "stuck/x", 64 << 20, b"s" * 1024, errors), daemon=True
    )
    flooder.start()
    rounds = 0
    try:
        while flooder.is_alive():
            peak = max(peak, b.rss_kb())
            pair.round_trip()  # during
            rounds += 1
            time.sleep(0.05)
        peak = max(peak, b.rss_kb())
    finally:
        flooder.join(60)
        stuck.close()
    assert not errors, errors
    assert rounds >= 1
    growth_mb = (peak - base) / 1024
    assert growth_mb < 100, f"broker RSS grew by {growth_mb:.0f} MB for a subscriber that reads nothing"
    dropped = b.stats()["deliveries_dropped"]
    assert dropped.get("qos0_msg", 0) + dropped.get("queue_full", 0) > 0, dropped
    pair.round_trip()  # after
    assert b.alive()


@pytest.mark.parametrize("version", [4, 5])
def test_a_256mb_remaining_length_is_refused_at_once_and_nothing_allocated(broker, clients, raw, uid, version):
    """A PUBLISH announcing 268,435,455 bytes (the largest remaining length) after a valid CONNECT,
    on 50 sockets at once, then 1 MB of its body: each is refused on its fixed header (v5 with
    DISCONNECT 0x95 Packet Too Large) well within a second, and the broker's RSS does not grow by
    the announced sizes. The same announced in a CONNECT is refused before anything is read."""
    b = broker()
    pair = _Pair(clients, b, uid)
    base = b.rss_kb()
    huge = b"\x30\xff\xff\xff\x7f"
    socks = [raw(b, version=version) for _ in range(50)]
    for i, c in enumerate(socks):
        assert c.connect(f"{uid}-{i}").rc == 0
    started = time.monotonic()
    for c in socks:
        c.send(huge)
    for c in socks:
        got = c.wait_closed(3)
        if version == 5:
            assert got and got[-1].type == DISCONNECT and parse_disconnect(got[-1])[0] == 0x95, got
        else:
            assert got == []
    assert time.monotonic() - started < 3.0
    pair.round_trip()  # during and after: the pair is unaffected
    before_connect = [raw(b, version=version) for _ in range(20)]
    for c in before_connect:
        c.send(b"\x10\xff\xff\xff\x7f")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            c.send(b"\x00" * (1 << 20))  # the broker has closed or is closing: it must not keep this
    for c in before_connect:
        assert c.wait_closed(3) == []
    assert b.wait_stat(("closed_before_connect", "packet_too_large"), lambda v: v == 20) == 20
    assert b.wait_stat(("disconnects", "packet_too_large"), lambda v: v == 50) == 50
    growth_mb = (b.rss_kb() - base) / 1024
    assert growth_mb < 20, f"RSS grew by {growth_mb:.0f} MB for 70 announced 256 MB packets"
    pair.round_trip()
