"""A minimal, fast MQTT 3.1.1 load generator: one QoS 0 publisher and one subscriber, one process.

Run by ``bench/e2e_webhook.py`` as a subprocess (so the broker keeps a core of its own), or alone::

    .venv/bin/python bench/loadgen.py --port 1883 --messages 200000 --payload 64

It prints one JSON object on stdout (the keys are set at the end of ``run``) and exits 0 when every message arrived,
1 on loss, a stall or an error. Everything is bounded: ``--stall`` seconds without any receipt
ends the run, and ``--timeout`` caps it as a whole.

Independent of mqhook on purpose (a benchmark must not share the code it measures): packets are
built by hand with ``struct`` and parsed with a small varint loop. Only the standard library and
uvloop are used.

How it publishes: the N PUBLISH packets are encoded once, before timing, each with its own
sequence number in the payload (10 ASCII digits, then '.' padding), and joined into chunks of
``--chunk`` packets. Each chunk is one ``transport.write``; the publisher awaits drain whenever the
transport's buffer passes ``--inflight-bytes``, and (closed loop) never lets more than
``--window`` messages be published and not yet received by the subscriber (0 = open loop).

How it receives: frames are split with a varint loop; each PUBLISH's sequence number is read from
its payload and marked in a bitmap, so duplicates, reordering and the exact loss are known. Fast
path: when a read holds exactly the next k frames as published, one bytes comparison against the
pre-encoded stream checks all of them (``--slow-path`` turns it off; the counts are the same).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
import sys
import time
from typing import Any

SEQ_DIGITS = 10
CONNACK, PUBLISH, SUBACK, PINGRESP = 2, 3, 9, 13
DISCONNECT = b"\xe0\x00"
PINGREQ = b"\xc0\x00"
# Keepalive 0 would mean "none", but mqhook (at the commit this was written against) then leaves
# its 10 s CONNECT timer armed and drops a silent subscriber after 10 s; a real keepalive with
# PINGREQs every KEEPALIVE / 3 seconds is what every long-lived client sends anyway.
KEEPALIVE = 60


# -- encoding (by hand) -----------------------------------------------------------------------


def varint(n: int) -> bytes:
    """MQTT Remaining Length."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, keepalive: int = 0) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, no will, no credentials."""
    body = _utf8("MQTT") + struct.pack("!BBH", 4, 0x02, keepalive) + _utf8(client_id)
    return b"\x10" + varint(len(body)) + body


def subscribe_packet(packet_id: int, topic_filter: str, qos: int = 0) -> bytes:
    body = struct.pack("!H", packet_id) + _utf8(topic_filter) + bytes([qos])
    return b"\x82" + varint(len(body)) + body


def payload_for(seq: int, size: int) -> bytes:
    """``size`` ASCII bytes: the sequence number in 10 digits, then '.' padding."""
    return b"%010d" % seq + b"." * (size - SEQ_DIGITS)


def publish_packets(topic: str, payload_size: int, n: int) -> list[bytes]:
    """N QoS 0 PUBLISH packets (fixed header 0x30), sequence numbers 0..N-1."""
    if payload_size < SEQ_DIGITS:
        raise ValueError(f"payload must be at least {SEQ_DIGITS} bytes (it carries the sequence number)")
    t = topic.encode("utf-8")
    head = b"\x30" + varint(2 + len(t) + payload_size) + struct.pack("!H", len(t)) + t
    pad = b"." * (payload_size - SEQ_DIGITS)
    return [head + (b"%010d" % seq) + pad for seq in range(n)]


def split_chunks(stream: bytes, frame_len: int, per_chunk: int) -> list[tuple[int, bytes]]:
    """[(messages sent once this chunk is written, chunk bytes)]: ``per_chunk`` frames a chunk."""
    total = len(stream) // frame_len
    return [
        (min(i + per_chunk, total), stream[i * frame_len : min(i + per_chunk, total) * frame_len])
        for i in range(0, total, per_chunk)
    ]


# -- protocols --------------------------------------------------------------------------------


class ProtocolFailure(Exception):
    pass


class Client(asyncio.Protocol):
    """One MQTT connection: frame splitting, CONNACK/SUBACK, write flow control, PUBLISH counting.

    Each PUBLISH's sequence number is marked in a bitmap of ``expect`` entries, giving the
    distinct count, duplicates and reordering. The frame loop and the counting are one loop on
    purpose: this is the subscriber's whole per-message cost (about 1 us on a 2020s core).
    """

    def __init__(self, name: str, expect: int = 0, reference: bytes | None = None, frame_len: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.name = name
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._connack: asyncio.Future[int] = loop.create_future()
        self._suback: asyncio.Future[int] | None = None
        self._drain: asyncio.Future[None] | None = None
        self.paused = False
        self.closing = False  # we sent DISCONNECT: the close that follows is ours
        self.lost_reason: str | None = None
        # PUBLISH accounting
        self.expect = expect
        self.seen = bytearray(expect)
        self.received = 0
        self.distinct = 0
        self.dups = 0
        self.out_of_order = 0
        self.foreign = 0  # sequence number out of range or unparsable
        self.next_seq = 0
        self.t_first = 0.0
        self.t_last = 0.0
        self._target = 0
        self._reached: asyncio.Future[None] | None = None
        # Fast path: the published stream (frame i at i * frame_len) to compare runs against.
        self.reference = reference
        self.frame_len = frame_len
        self.fast_frames = 0

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.lost_reason = repr(exc) if exc else "closed by the broker"
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)  # drain() sees lost_reason / closing and returns
        for fut in (self._connack, self._suback, self._reached):
            if fut is not None and not fut.done():
                fut.set_exception(ProtocolFailure(f"{self.name}: connection lost ({self.lost_reason})"))

    def pause_writing(self) -> None:
        self.paused = True
        self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self.paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        n = len(buf)
        p = 0
        got = 0
        seen = self.seen
        expect = self.expect
        nxt = self.next_seq
        ref = self.reference
        if ref is not None:
            # The next k whole frames are usually exactly PUBLISH nxt .. nxt+k-1 as published:
            # one memcmp checks every byte of them. Anything else takes the frame loop below.
            size = self.frame_len
            k = n // size
            if k and nxt + k <= expect:
                a = nxt * size
                if buf[: k * size] == ref[a : a + k * size] and seen.find(1, nxt, nxt + k) < 0:
                    seen[nxt : nxt + k] = b"\x01" * k
                    self.distinct += k
                    self.fast_frames += k
                    nxt += k
                    got = k
                    p = k * size
        while n - p >= 2:
            h = buf[p]
            q = p + 1
            rl = 0
            shift = 0
            complete = False
            while q < n:
                b = buf[q]
                q += 1
                rl |= (b & 0x7F) << shift
                if b < 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolFailure(f"{self.name}: malformed remaining length")
            if not complete:
                break
            end = q + rl
            if end > n:
                break
            p = end
            kind = h >> 4
            if kind == PUBLISH:
                got += 1
                off = q + 2 + ((buf[q] << 8) | buf[q + 1]) + (2 if h & 0x06 else 0)
                try:
                    seq = int(buf[off : off + SEQ_DIGITS])
                except ValueError:
                    seq = -1
                if not 0 <= seq < expect:
                    self.foreign += 1
                    continue
                if seen[seq]:
                    self.dups += 1
                else:
                    seen[seq] = 1
                    self.distinct += 1
                if seq != nxt:
                    self.out_of_order += 1
                nxt = seq + 1
            elif kind == CONNACK:
                if not self._connack.done():
                    self._connack.set_result(buf[q + 1])
            elif kind == SUBACK:
                if self._suback is not None and not self._suback.done():
                    self._suback.set_result(buf[end - 1])
            elif kind != PINGRESP:
                raise ProtocolFailure(f"{self.name}: unexpected packet type {kind}")
        self._buf = buf[p:]
        if got:
            self.next_seq = nxt
            now = time.monotonic()
            if not self.received:
                self.t_first = now
            self.t_last = now
            self.received += got
            fut = self._reached
            if fut is not None and self.received >= self._target and not fut.done():
                fut.set_result(None)

    # -- client side ----------------------------------------------------------------------------
    async def handshake(self, client_id: str) -> None:
        assert self.transport is not None
        self.transport.write(connect_packet(client_id, KEEPALIVE))
        rc = await self._connack
        if rc != 0:
            raise ProtocolFailure(f"{self.name}: CONNACK return code {rc}")

    async def subscribe(self, topic_filter: str) -> None:
        assert self.transport is not None
        self._suback = asyncio.get_running_loop().create_future()
        self.transport.write(subscribe_packet(1, topic_filter))
        rc = await self._suback
        if rc >= 0x80:
            raise ProtocolFailure(f"{self.name}: SUBACK refused ({rc:#x})")

    async def drain(self, progress: Client, stall: float) -> bool:
        """Wait until the write buffer is below its limit; False once ``progress`` (the subscriber)
        received nothing for ``stall`` seconds meanwhile (the broker may pause reading us for a
        while under webhook backpressure: that is not a stall while messages still flow)."""
        start = time.monotonic()
        while self.paused and self._drain is not None and not (self.closing or self.lost_reason):
            remaining = stall - (time.monotonic() - max(start, progress.t_last))
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drain), remaining)
        if self.lost_reason:
            raise ProtocolFailure(f"{self.name}: connection lost ({self.lost_reason})")
        return True

    async def wait_until(self, count: int, stall: float) -> bool:
        """Wait until ``count`` PUBLISHes arrived; False once none arrived for ``stall`` seconds."""
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        while self.received < count:
            remaining = stall - (time.monotonic() - max(start, self.t_last))
            if remaining <= 0:
                return False
            self._target = count
            self._reached = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._reached), remaining)
            except TimeoutError:
                pass
            finally:
                self._reached = None
        return True

    def ping(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(PINGREQ)

    def disconnect(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(DISCONNECT)
            self.transport.close()


# -- the run ----------------------------------------------------------------------------------


async def _connect(factory: Any, host: str, port: int, write_high: int) -> Any:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(factory, host, port)
    transport.set_write_buffer_limits(high=write_high)
    return proto


async def _pinger(clients: list[Client]) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE / 3)
        for client in clients:
            client.ping()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.messages
    t0 = time.monotonic()
    packets = publish_packets(args.topic, args.payload, n)
    frame_len = len(packets[0])
    stream = b"".join(packets)
    del packets
    chunks = split_chunks(stream, frame_len, args.chunk)
    encode_s = time.monotonic() - t0
    result: dict[str, Any] = {
        "messages": n,
        "payload": args.payload,
        "chunk": args.chunk,
        "window": args.window,
        "frame_bytes": frame_len,
        "encode_s": round(encode_s, 3),
        "error": None,
        "stalled": False,
    }
    reference = None if args.slow_path else stream
    sub = await _connect(lambda: Client("subscriber", n, reference, frame_len), args.host, args.port, 1 << 16)
    pub = await _connect(lambda: Client("publisher"), args.host, args.port, args.inflight_bytes)
    await sub.handshake(f"bench-sub-{args.tag}")
    await sub.subscribe(args.topic)
    await pub.handshake(f"bench-pub-{args.tag}")
    window = args.window or n + 1
    pinger = asyncio.create_task(_pinger([pub, sub]))
    cpu0 = time.process_time()
    t_first_publish = time.monotonic()
    t_published = t_first_publish
    published = 0
    try:
        for sent_after, chunk in chunks:
            if sent_after - sub.received > window and not await sub.wait_until(sent_after - window, args.stall):
                result["stalled"] = True
                break
            pub.transport.write(chunk)
            published = sent_after
            if pub.paused:
                if not await pub.drain(sub, args.stall):
                    result["stalled"] = True
                    break
            else:
                # Yield once per chunk so the subscriber (same loop) reads while we publish: uvloop
                # writes straight to the socket, so an unpaused publisher would never yield.
                await asyncio.sleep(0)
        t_published = time.monotonic()
        if not result["stalled"] and not await sub.wait_until(n, args.stall):
            result["stalled"] = True
    except ProtocolFailure as exc:
        result["error"] = str(exc)
    finally:
        pinger.cancel()
        pub.disconnect()
        sub.disconnect()
    elapsed = (sub.t_last - t_first_publish) if sub.received else 0.0
    result.update(
        published=published,
        received=sub.received,
        distinct=sub.distinct,
        lost=n - sub.distinct,
        dups=sub.dups,
        out_of_order=sub.out_of_order,
        foreign=sub.foreign,
        fast_path_share=round(sub.fast_frames / sub.received, 3) if sub.received else 0.0,
        t_first_publish=t_first_publish,
        t_published=t_published,
        t_last_receive=sub.t_last,
        publish_s=round(t_published - t_first_publish, 4),
        elapsed_s=round(elapsed, 4),
        msg_per_s=round(sub.received / elapsed, 1) if elapsed > 0 else 0.0,
        cpu_s=round(time.process_time() - cpu0, 3),
    )
    if sub.lost_reason or pub.lost_reason:
        lost = f"publisher: {pub.lost_reason or 'open'}, subscriber: {sub.lost_reason or 'open'}"
        result["error"] = f"{result['error'] or 'connection lost'} ({lost})"
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="MQTT 3.1.1 QoS 0 load: 1 publisher -> broker -> 1 subscriber")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--payload", type=int, default=64, help="payload bytes (>= 10: it carries the sequence number)")
    p.add_argument("--topic", default="bench/t")
    p.add_argument("--chunk", type=int, default=500, help="PUBLISH packets per write")
    p.add_argument("--inflight-bytes", type=int, default=1 << 20, help="publisher transport buffer before drain")
    p.add_argument("--window", type=int, default=10_000, help="max messages published and not received (0 = open)")
    p.add_argument("--stall", type=float, default=10.0, help="give up after this many seconds without a receipt")
    p.add_argument("--timeout", type=float, default=120.0, help="hard cap on the whole run, seconds")
    p.add_argument("--slow-path", action="store_true", help="parse every frame in Python (no memcmp fast path)")
    p.add_argument("--tag", default="0", help="suffix of the client ids")
    args = p.parse_args(argv)
    if args.messages < 1 or args.chunk < 1 or args.payload < SEQ_DIGITS:
        p.error(f"--messages and --chunk must be >= 1, --payload >= {SEQ_DIGITS}")
    return args


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    try:
        async with asyncio.timeout(args.timeout):
            return await run(args)
    except TimeoutError:
        return {"messages": args.messages, "error": f"hard timeout after {args.timeout}s", "stalled": True}
    except (OSError, ProtocolFailure) as exc:
        return {"messages": args.messages, "error": f"{type(exc).__name__}: {exc}", "stalled": False}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(_main(args))
    except ImportError:  # pragma: no cover - the venv has uvloop
        result = asyncio.run(_main(args))
        result["loop"] = "asyncio"
    print(json.dumps(result), flush=True)
    ok = not result.get("error") and not result.get("stalled") and result.get("lost") == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
