"""Which on-disk store for the durable webhook spool: measured per event on this machine.

Run from the project root::

    .venv/bin/python bench/spool_store.py [--events 200000] [--size 300]

Each candidate appends ``--events`` records of ``--size`` bytes the way the broker would (one ``put``
per event on the loop thread, a group commit every 100 events), then acknowledges them. Printed: the
hot-path cost per event (what ``put`` costs the broker) and the whole cost per event including the
commits. The decision in README "Reliability" / ``mqhook.webhook.spool`` rests on these numbers.

- ``mmap``: records (header + crc32) copied into a pre-allocated, memory-mapped segment file: the
  bytes are in the kernel's page cache when ``put`` returns (they survive a process crash), no
  system call per event; the commit is an ``fdatasync``.
- ``write_each``: ``os.write`` of every record (the same promise, a system call per event).
- ``buffer_write``: append to a ``bytearray``, one ``os.write`` per commit (cheapest, but an event
  acknowledged before its commit is lost with the process).
- ``sqlite_wal``: SQLite in WAL mode, ``synchronous=NORMAL``, one ``executemany`` + commit per group.
"""

from __future__ import annotations

import argparse
import mmap
import os
import sqlite3
import struct
import tempfile
import time
import zlib

HEADER = struct.Struct("<IIIQ")  # magic, body length, crc32, seq


def bench_mmap(d: str, events: list[bytes], group: int, sync: bool) -> tuple[float, float]:
    path = os.path.join(d, "seg")
    size = sum(len(e) + HEADER.size for e in events) + 4096
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, size)
    mm = mmap.mmap(fd, size)
    pack, crc, pos, hot = HEADER.pack_into, zlib.crc32, 0, 0.0
    t0 = time.perf_counter()
    for i, e in enumerate(events):
        h0 = time.perf_counter()
        n = len(e)
        pack(mm, pos, 0x5350, n, crc(e), i)
        mm[pos + HEADER.size : pos + HEADER.size + n] = e
        pos += HEADER.size + n
        hot += time.perf_counter() - h0
        if sync and i % group == group - 1:
            os.fdatasync(fd)
    total = time.perf_counter() - t0
    mm.close()
    os.close(fd)
    return hot, total


def bench_write_each(d: str, events: list[bytes], group: int, sync: bool) -> tuple[float, float]:
    fd = os.open(os.path.join(d, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    pack, crc, hot = HEADER.pack, zlib.crc32, 0.0
    t0 = time.perf_counter()
    for i, e in enumerate(events):
        h0 = time.perf_counter()
        os.write(fd, pack(0x5350, len(e), crc(e), i) + e)
        hot += time.perf_counter() - h0
        if sync and i % group == group - 1:
            os.fdatasync(fd)
    total = time.perf_counter() - t0
    os.close(fd)
    return hot, total


def bench_buffer_write(d: str, events: list[bytes], group: int, sync: bool) -> tuple[float, float]:
    fd = os.open(os.path.join(d, "log2"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    pack, crc, hot, buf = HEADER.pack, zlib.crc32, 0.0, bytearray()
    t0 = time.perf_counter()
    for i, e in enumerate(events):
        h0 = time.perf_counter()
        buf += pack(0x5350, len(e), crc(e), i)
        buf += e
        hot += time.perf_counter() - h0
        if i % group == group - 1:
            os.write(fd, buf)
            buf.clear()
            if sync:
                os.fdatasync(fd)
    total = time.perf_counter() - t0
    os.close(fd)
    return hot, total


def bench_sqlite(d: str, events: list[bytes], group: int, sync: bool) -> tuple[float, float]:
    db = sqlite3.connect(os.path.join(d, "spool.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'NORMAL' if sync else 'OFF'}")
    db.execute("CREATE TABLE IF NOT EXISTS ev (seq INTEGER PRIMARY KEY, key TEXT, data BLOB)")
    pending: list[tuple[int, str, bytes]] = []
    hot = 0.0
    t0 = time.perf_counter()
    for i, e in enumerate(events):
        h0 = time.perf_counter()
        pending.append((i, "c", e))
        hot += time.perf_counter() - h0
        if i % group == group - 1:
            db.execute("BEGIN")
            db.executemany("INSERT INTO ev VALUES (?, ?, ?)", pending)
            db.execute("COMMIT")
            pending.clear()
    db.execute("DELETE FROM ev")  # the acknowledgement of everything, as one statement (a best case)
    total = time.perf_counter() - t0
    db.close()
    return hot, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--group", type=int, default=100, help="events per group commit")
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary directory under ./data)")
    args = parser.parse_args()
    os.makedirs("data", exist_ok=True)
    events = [os.urandom(args.size // 2).hex().encode()[: args.size] for _ in range(args.events)]
    print(f"{args.events} events of {args.size} bytes, a commit every {args.group} events")
    print(f"{'store':<14} {'sync':<5} {'put us/event':>13} {'total us/event':>15}")
    for name, fn in (
        ("mmap", bench_mmap),
        ("write_each", bench_write_each),
        ("buffer_write", bench_buffer_write),
        ("sqlite_wal", bench_sqlite),
    ):
        for sync in (False, True):
            with tempfile.TemporaryDirectory(dir=args.dir or "data") as d:
                hot, total = fn(d, events, args.group, sync)
            n = args.events
            print(f"{name:<14} {sync!s:<5} {hot / n * 1e6:>13.2f} {total / n * 1e6:>15.2f}")


if __name__ == "__main__":
    main()
