"""One MQTT 3.1.1 connection of the load generator: an ``asyncio.Protocol`` for uvloop.

A single class plays every role (publisher, subscriber, storm and idle connections): the
receive loop splits frames with a varint loop and handles each packet type inline, because
that loop is the subscriber's whole per-message cost. Per PUBLISH it reads the 32 hex digits
of the payload (publisher, sequence number, send time), marks the sequence number in a
per-publisher bitmap (distinct / duplicate / reordered), and records the latency (receive
time of the read - send time in the payload) in the histogram of ``stats``. QoS 1 and 2
acknowledgements are written once per read, joined.

Publishers track their unacknowledged packet ids in a 64 Ki bytearray and free a slot on
PUBACK (QoS 1) or PUBCOMP (QoS 2, after answering PUBREC with PUBREL).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

from mqhook.loadtest import packets as pk
from mqhook.loadtest.packets import SUFFIX
from mqhook.loadtest.stats import MAX_SEQ, MAX_US, N_BUCKETS, SUB_BITS, Counters

__all__ = ["Counters", "MqttClient", "ProtocolFailure"]

_SHIFT = SUB_BITS - 1
_MASK = pk.SEQ_MASK


class ProtocolFailure(Exception):
    """The broker broke the protocol, refused us or closed the connection."""


class MqttClient(asyncio.Protocol):
    """One connection. Subscriber accounting lives in the attributes set by ``as_subscriber``."""

    def __init__(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        self.name = name
        self.index = -1
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self.connack: asyncio.Future[int] = loop.create_future()
        self._suback: asyncio.Future[int] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._ack_waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.closing = False
        self.lost_reason: str | None = None
        # publisher side
        self.pending = bytearray(65536)
        self.next_pid = 1
        self.inflight = 0
        self.acked = 0
        self.unexpected_acks = 0
        self.t_last_ack = 0.0
        # subscriber side (see as_subscriber)
        self.states: dict[int, list[Any]] = {}
        self.initial_bitmap = 1 << 12
        self.hist: list[int] | None = None
        self._scratch = [0] * N_BUCKETS  # the histogram of a client that is not a subscriber
        self.timeline: list[int] | None = None
        self.counters: Counters | None = None
        self.on_receive: Callable[[], None] | None = None
        self.slot = 0
        self.t0 = 0.0
        self.received = 0
        self.distinct = 0
        self.dups = 0
        self.reordered = 0
        self.foreign = 0
        self.t_first = 0.0
        self.t_last = 0.0

    def as_subscriber(
        self, hist: list[int], timeline: list[int], counters: Counters, worker: int, initial_bitmap: int
    ) -> None:
        """Count PUBLISHes into the worker's shared histogram, timeline and live counters."""
        self.hist = hist
        self.timeline = timeline
        self.counters = counters
        self.slot = 3 * worker
        self.initial_bitmap = max(16, initial_bitmap)

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.lost_reason = repr(exc) if exc else "closed by the broker"
        for fut in (self._drain, self._ack_waiter):
            if fut is not None and not fut.done():
                fut.set_result(None)
        for f in (self.connack, self._suback):
            if f is not None and not f.done():
                f.set_exception(ProtocolFailure(f"{self.name}: connection lost ({self.lost_reason})"))

    def pause_writing(self) -> None:
        self.paused = True
        self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self.paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:  # one loop on purpose: the hot path
        buf = self._buf + data if self._buf else data
        n = len(buf)
        p = 0
        got = new = acked = 0
        out: list[bytes] | None = None
        now_ns = time.time_ns()
        states = self.states
        hist = self.hist if self.hist is not None else self._scratch
        # The current publisher's bitmap and next expected sequence number, kept in locals
        # while consecutive messages come from the same publisher (the usual case).
        cur_pub = -1
        st: list[Any] = []
        seen = bytearray()
        nxt = 0
        # Packets of one chunk share their send time: the latency bucket is computed once.
        last_ts = b""
        idx = 0
        ts_idx: dict[bytes, int] = {}  # interleaved publishers: one bucket per send time
        while n - p >= 2:
            fs = p
            h = buf[p]
            rl = buf[p + 1]
            q = p + 2
            if rl >= 0x80:  # a multi-byte Remaining Length
                rl &= 0x7F
                shift = 7
                while True:
                    if q >= n:
                        rl = -1
                        break
                    b = buf[q]
                    q += 1
                    rl |= (b & 0x7F) << shift
                    if b < 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        self._fail("malformed remaining length")
                        return
                if rl < 0:
                    break
            end = q + rl
            if end > n:
                break
            p = end
            kind = h >> 4
            if kind == 3:  # PUBLISH
                got += 1
                off = q + 2 + ((buf[q] << 8) | buf[q + 1])
                if h != 0x30 and h & 0x06:
                    if out is None:
                        out = []
                    out.append((b"\x50\x02" if h & 0x04 else b"\x40\x02") + buf[off : off + 2])
                    off += 2
                if end - off < 32:
                    self.foreign += 1
                    continue
                ts = buf[off + 16 : off + 32]
                try:
                    ident = int(buf[off : off + 16], 16)
                    if ts != last_ts:
                        last_ts = ts
                        cached = ts_idx.get(ts)
                        if cached is None:
                            us = (now_ns - int(ts, 16)) // 1000
                            if us < 128:
                                idx = us if us > 0 else 0
                            else:
                                if us > MAX_US:
                                    us = MAX_US
                                s = us.bit_length() - SUB_BITS
                                idx = (s << _SHIFT) + (us >> s)
                            ts_idx[ts] = idx
                        else:
                            idx = cached
                except ValueError:
                    self.foreign += 1
                    continue
                pub = ident >> 40
                if pub != cur_pub:
                    if cur_pub >= 0:
                        st[1] = nxt
                    st = states.get(pub) or states.setdefault(pub, [bytearray(self.initial_bitmap), 0])
                    seen = st[0]
                    nxt = st[1]
                    cur_pub = pub
                seq = ident & _MASK
                if seq < len(seen) and not seen[seq]:
                    seen[seq] = 1
                    new += 1
                elif seq >= MAX_SEQ:
                    self.foreign += 1
                    continue
                elif seq >= len(seen):
                    seen.extend(bytes(max(seq + 1 - len(seen), len(seen))))
                    seen[seq] = 1
                    new += 1
                else:
                    self.dups += 1
                if seq < nxt:
                    self.reordered += 1
                nxt = seq + 1
                hist[idx] += 1
                tso = end + off + 16 - fs
                if h == 0x30 and buf[tso : tso + 16] == ts:
                    # Fast path: the rest of this publisher's chunk usually follows (same send
                    # time), byte for byte as published but for the ident's last two hex digits.
                    # Build that run, compare it with one memcmp (binary search for where it
                    # ends), and count it at once.
                    flen = end - fs
                    a = seq & 0xFF
                    r = min(0xFF - a, (n - end) // flen)
                    if r >= 1:
                        prefix = buf[fs : off + 14]
                        tail = buf[off + 16 : end]
                        sep = tail + prefix
                        # Galloping: compare 4, then 16, 64... frames at a time; the first
                        # mismatching stretch is binary-searched for where the run ends.
                        m = 0
                        step = 4
                        while m < r:
                            t = min(step, r - m)
                            lo = a + 1 + m
                            start = end + m * flen
                            expect = prefix + sep.join(SUFFIX[lo : lo + t]) + tail
                            if buf[start : start + t * flen] == expect:
                                m += t
                                step <<= 2
                                continue
                            lo, hi = 0, t - 1
                            while lo < hi:
                                mid = (lo + hi + 1) >> 1
                                if buf[start : start + mid * flen] == expect[: mid * flen]:
                                    lo = mid
                                else:
                                    hi = mid - 1
                            m += lo
                            break
                        s1 = seq + 1
                        s2 = s1 + m
                        if m and s2 <= len(seen) and seen.find(1, s1, s2) < 0:
                            seen[s1:s2] = b"\x01" * m
                            new += m
                            got += m
                            nxt = s2
                            p = end + m * flen
                            hist[idx] += m
            elif kind == 4 or kind == 7:  # PUBACK / PUBCOMP: a publisher's slot is free
                pid = (buf[q] << 8) | buf[q + 1]
                if self.pending[pid]:
                    self.pending[pid] = 0
                    acked += 1
                else:
                    self.unexpected_acks += 1
            elif kind == 5:  # PUBREC -> PUBREL
                if out is None:
                    out = []
                out.append(b"\x62\x02" + buf[q : q + 2])
            elif kind == 6:  # PUBREL -> PUBCOMP
                if out is None:
                    out = []
                out.append(b"\x70\x02" + buf[q : q + 2])
            elif kind == 2:  # CONNACK
                if not self.connack.done():
                    self.connack.set_result(buf[q + 1])
            elif kind == 9:  # SUBACK
                if self._suback is not None and not self._suback.done():
                    self._suback.set_result(buf[end - 1])
            elif kind != 13:  # PINGRESP is the only other packet we expect
                self._fail(f"unexpected packet type {kind}")
                return
        if cur_pub >= 0:
            st[1] = nxt
        self._buf = buf[p:]
        if out is not None and self.transport is not None:
            self.transport.write(b"".join(out))
        if got:
            now = time.monotonic()
            if not self.received:
                self.t_first = now
            self.t_last = now
            self.received += got
            self.distinct += new
            counters = self.counters
            if counters is not None:
                mv = counters.mv
                mv[self.slot + 1] += new
                mv[self.slot + 2] += got
            tl = self.timeline
            if tl is not None:
                sec = int(now - self.t0)
                if sec >= len(tl):
                    tl.extend([0] * (sec + 1 - len(tl)))
                tl[sec if sec > 0 else 0] += got
            if self.on_receive is not None:
                self.on_receive()
        if acked:
            self.inflight -= acked
            self.acked += acked
            self.t_last_ack = time.monotonic()
            w = self._ack_waiter
            if w is not None and not w.done():
                w.set_result(None)

    def _fail(self, why: str) -> None:
        self.lost_reason = f"{self.name}: {why}"
        if self.transport is not None:
            self.transport.abort()

    # -- client side -----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ProtocolFailure(f"{self.name}: connection lost ({self.lost_reason})")
        self.transport.write(data)

    async def handshake(self, client_id: str, keepalive: int, timeout: float) -> None:
        """CONNECT and wait for CONNACK 0."""
        self.write(pk.connect(client_id, keepalive))
        rc = await asyncio.wait_for(asyncio.shield(self.connack), timeout)
        if rc != 0:
            raise ProtocolFailure(f"{self.name}: CONNACK return code {rc}")

    async def subscribe(self, topic_filter: str, qos: int, timeout: float) -> int:
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS."""
        self._suback = asyncio.get_running_loop().create_future()
        self.write(pk.subscribe(1, topic_filter, qos))
        rc = await asyncio.wait_for(asyncio.shield(self._suback), timeout)
        if rc >= 0x80:
            raise ProtocolFailure(f"{self.name}: SUBACK refused {topic_filter!r} ({rc:#x})")
        return rc

    def take_pids(self, first: int, k: int) -> bool:
        """Mark packet ids ``first`` .. ``first + k - 1`` unacknowledged; False if one still is."""
        pending = self.pending
        if pending.find(1, first, first + k) >= 0:
            return False
        pending[first : first + k] = b"\x01" * k
        self.inflight += k
        return True

    def spare_pid(self) -> int:
        """A free packet id from 1..255 (never used by ``packets.packet_id``): fault injection."""
        for _ in range(255):
            pid = self.next_pid
            self.next_pid = pid % 255 + 1
            if not self.pending[pid]:
                self.pending[pid] = 1
                self.inflight += 1
                return pid
        raise ProtocolFailure(f"{self.name}: no spare packet identifier")

    async def wait_ack(self, timeout: float) -> bool:
        """Wait for any acknowledgement; False after ``timeout`` seconds without one."""
        self._ack_waiter = fut = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        finally:
            self._ack_waiter = None
        self.check()
        return True

    async def drain(self, timeout: float) -> bool:
        """Wait until the write buffer is below its high-water mark; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.paused and self._drain is not None and not (self.closing or self.lost_reason):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drain), remaining)
        self.check()
        return True

    def check(self) -> None:
        if self.lost_reason:
            raise ProtocolFailure(f"{self.name}: connection lost ({self.lost_reason})")

    def ping(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(pk.PINGREQ)

    def disconnect(self) -> None:
        """DISCONNECT and close (our close: not reported as lost)."""
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(pk.DISCONNECT)
            self.transport.close()

    def subscriber_result(self) -> dict[str, Any]:
        """What the orchestrator merges: counts and the bitmaps, trimmed to the last seen entry."""
        maps = {}
        for pub, (seen, _last) in self.states.items():
            end = seen.rfind(1) + 1
            maps[pub] = bytes(seen[:end])
        return {
            "name": self.name,
            "index": self.index,
            "received": self.received,
            "distinct": self.distinct,
            "dups": self.dups,
            "reordered": self.reordered,
            "foreign": self.foreign,
            "t_first": self.t_first,
            "t_last": self.t_last,
            "bitmaps": maps,
            "lost_reason": self.lost_reason,
        }
