"""QoS 1 fan-in into one persistent subscriber (MQTT 3.1.1, clean session 0), for mqtt.durable_sessions.

    .venv/bin/python bench/durable_sessions.py --port 1883 [--pubs 4] [--count 50000] [--inflight 64]

``mqhook bench`` connects with clean sessions only, which durable_sessions does not keep; this one's
subscriber keeps its session (and so is journaled and written). Prints messages/s end to end (first
PUBLISH sent to last one received by the subscriber, every copy acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect(cid: str, clean: bool) -> bytes:
    return _packet(0x10, _utf8("MQTT") + bytes([4, 0x02 if clean else 0]) + struct.pack("!H", 60) + _utf8(cid))


def publish(topic: bytes, payload: bytes, pid: int) -> bytes:
    return _packet(0x32, struct.pack("!H", len(topic)) + topic + struct.pack("!H", pid) + payload)


def puback(pid: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", pid)


async def packets(reader: asyncio.StreamReader):  # type: ignore[no-untyped-def]
    buf = b""
    while True:
        data = await reader.read(1 << 16)
        if not data:
            return
        buf += data
        out = []
        i = 0
        while True:
            if len(buf) - i < 2:
                break
            n = mult = 0
            j = i + 1
            while j < len(buf):
                b = buf[j]
                n += (b & 0x7F) << mult
                mult += 7
                j += 1
                if not b & 0x80:
                    break
            else:
                break
            if len(buf) - j < n:
                break
            out.append((buf[i], buf[j : j + n]))
            i = j + n
        buf = buf[i:]
        yield out


async def subscriber(host: str, port: int, total: int, ready: asyncio.Event, done: asyncio.Future) -> None:  # type: ignore[type-arg]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(connect("durable-bench-sub", clean=False))
    writer.write(_packet(0x82, struct.pack("!H", 1) + _utf8("dbench/#") + b"\x01"))
    got = 0
    async for batch in packets(reader):
        acks = []
        for first, body in batch:
            kind = first >> 4
            if kind == 9:
                ready.set()
            elif kind == 3:
                (tl,) = struct.unpack_from("!H", body)
                (pid,) = struct.unpack_from("!H", body, 2 + tl)
                acks.append(puback(pid))
                got += 1
        if acks:
            writer.write(b"".join(acks))
        if got >= total:
            done.set_result(time.perf_counter())
            writer.close()
            return


async def publisher(host: str, port: int, idx: int, count: int, window: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(connect(f"durable-bench-pub-{idx}", clean=True))
    topic = f"dbench/{idx}".encode()
    payload = b"x" * 16
    sent = acked = 0
    stream = packets(reader)
    async for batch in stream:
        for first, _body in batch:
            if first >> 4 == 4:
                acked += 1
        if acked >= count:
            break
        while sent < count and sent - acked < window:
            writer.write(publish(topic, payload, sent % 65535 + 1))
            sent += 1
    writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--pubs", type=int, default=4)
    ap.add_argument("--count", type=int, default=50000, help="messages per publisher")
    ap.add_argument("--inflight", type=int, default=64, help="unacknowledged PUBLISHes per publisher")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    for _ in range(a.repeat):
        ready = asyncio.Event()
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        total = a.pubs * a.count
        sub = asyncio.create_task(subscriber(a.host, a.port, total, ready, done))
        await ready.wait()
        start = time.perf_counter()
        await asyncio.gather(*(publisher(a.host, a.port, i, a.count, a.inflight) for i in range(a.pubs)))
        end = await asyncio.wait_for(done, 120)
        await sub
        print(f"{total} msgs in {end - start:.2f}s: {total / (end - start):,.0f} msg/s", flush=True)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
