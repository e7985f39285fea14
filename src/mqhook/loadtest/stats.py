"""Counters of ``mqhook bench``: latency histogram, sequence tracking, timelines, /proc readers.

All sans-I/O except the three /proc readers at the end. The client's receive loop inlines
``bucket_index`` and ``SeqTracker.add`` for speed; these classes are the reference and what
merging across processes uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# -- latency histogram -------------------------------------------------------------------------

SUB_BITS = 7  # values below 128 us are exact; above, 64 buckets per power of two (< 1.6% error)
HALF = 1 << (SUB_BITS - 1)
MAX_US = (1 << 37) - 1  # ~38 hours: anything larger is clamped
N_BUCKETS = ((MAX_US.bit_length() - SUB_BITS) << (SUB_BITS - 1)) + (1 << SUB_BITS)  # 2048
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def bucket_index(us: int) -> int:
    """The bucket of a latency in microseconds (HDR-like: log buckets, linear inside each)."""
    if us < 0:
        us = 0
    elif us > MAX_US:
        us = MAX_US
    m = us.bit_length()
    if m <= SUB_BITS:
        return us
    s = m - SUB_BITS
    return (s << (SUB_BITS - 1)) + (us >> s)


def bucket_bounds(idx: int) -> tuple[int, int]:
    """[low, high) in microseconds of bucket ``idx``."""
    if idx < 1 << SUB_BITS:
        return idx, idx + 1
    s = (idx >> (SUB_BITS - 1)) - 1
    mant = idx - (s << (SUB_BITS - 1))
    return mant << s, (mant + 1) << s


class Histogram:
    """Fixed-bucket latency histogram (microseconds); ``counts`` is a plain list, mergeable."""

    def __init__(self, counts: Sequence[int] | None = None) -> None:
        self.counts: list[int] = list(counts) if counts is not None else [0] * N_BUCKETS

    def record(self, us: int, n: int = 1) -> None:
        self.counts[bucket_index(us)] += n

    def merge(self, counts: Sequence[int]) -> None:
        mine = self.counts
        for i, c in enumerate(counts):
            if c:
                mine[i] += c

    @property
    def total(self) -> int:
        return sum(self.counts)

    def percentile(self, q: float) -> float | None:
        """The q-th percentile in microseconds (bucket midpoint), None when empty."""
        total = self.total
        if not total:
            return None
        rank = max(1, -(-total * q // 100))  # ceil(total * q / 100), at least the first sample
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if c and seen >= rank:
                lo, hi = bucket_bounds(i)
                return (lo + hi - 1) / 2
        return None  # pragma: no cover - unreachable

    def mean(self) -> float | None:
        total = self.total
        if not total:
            return None
        acc = 0.0
        for i, c in enumerate(self.counts):
            if c:
                lo, hi = bucket_bounds(i)
                acc += c * (lo + hi - 1) / 2
        return acc / total

    def max(self) -> float | None:
        for i in range(len(self.counts) - 1, -1, -1):
            if self.counts[i]:
                return float(bucket_bounds(i)[1] - 1)
        return None

    def summary_ms(self) -> dict[str, float | int | None]:
        """count, mean, p50, p90, p99, p99_9, max in milliseconds (3 significant digits)."""
        out: dict[str, float | int | None] = {"count": self.total}
        for key, value in (("mean", self.mean()), *((pkey(q), self.percentile(q)) for q in PERCENTILES)):
            out[key] = _ms(value)
        out["max"] = _ms(self.max())
        return out

    def sparse(self) -> list[list[int]]:
        """[[low_us, high_us, count], ...] of the non-empty buckets (for JSON and plots)."""
        return [[*bucket_bounds(i), c] for i, c in enumerate(self.counts) if c]


def pkey(q: float) -> str:
    """50.0 -> 'p50', 99.9 -> 'p99_9'."""
    return "p" + (f"{q:g}".replace(".", "_"))


def _ms(us: float | None) -> float | None:
    if us is None:
        return None
    return float(f"{us / 1000:.3g}")


# -- sequence tracking -------------------------------------------------------------------------

MAX_SEQ = 1 << 31  # a bitmap index beyond this is treated as garbage, not allocated


class SeqTracker:
    """Which sequence numbers of which publisher arrived: one byte per sequence number.

    ``add`` returns False for a duplicate. ``reordered`` counts arrivals below the previous one
    from the same publisher. Bitmaps grow by doubling, so no count has to be known in advance.
    """

    def __init__(self, initial: int = 1 << 12) -> None:
        self.initial = max(1, initial)
        self.seen: dict[int, bytearray] = {}
        self.last: dict[int, int] = {}
        self.distinct = 0
        self.dups = 0
        self.reordered = 0
        self.foreign = 0

    def add(self, pub: int, seq: int) -> bool:
        if not 0 <= seq < MAX_SEQ:
            self.foreign += 1
            return False
        seen = self.seen.get(pub)
        if seen is None:
            seen = self.seen[pub] = bytearray(self.initial)
        if seq >= len(seen):
            seen.extend(bytes(max(seq + 1 - len(seen), len(seen))))
        if seq < self.last.get(pub, 0):
            self.reordered += 1
        self.last[pub] = seq + 1
        if seen[seq]:
            self.dups += 1
            return False
        seen[seq] = 1
        self.distinct += 1
        return True


def bitmap_count(bitmap: bytes | bytearray, limit: int | None = None) -> int:
    """How many entries are set (below ``limit`` if given)."""
    return bitmap.count(1, 0, limit) if limit is not None else bitmap.count(1)


def bitmap_union(bitmaps: Iterable[bytes | bytearray]) -> bytes:
    """Entry-wise OR of 0/1 bitmaps (through big ints: C speed even for millions of entries)."""
    acc = 0
    width = 0
    for bm in bitmaps:
        width = max(width, len(bm))
        acc |= int.from_bytes(bm, "little")
    return acc.to_bytes(width, "little") if width else b""


def loss_and_dups(sent: dict[int, int], bitmaps: Sequence[dict[int, bytes | bytearray]]) -> dict[str, int]:
    """Loss for one copy of every message of every publisher in ``sent`` ({publisher: count}).

    ``bitmaps`` holds, per receiver that shares the copy (one receiver, or the members of a shared
    subscription group), its {publisher: bitmap}. Returns expected, distinct (the union), lost
    (expected - distinct), cross_dups (a message that reached two receivers of the group) and
    unexpected (entries for sequence numbers never sent, or for publishers not in ``sent``).
    """
    expected = sum(sent.values())
    distinct = cross = unexpected = 0
    pubs = set(sent)
    for bm_by_pub in bitmaps:
        pubs.update(bm_by_pub)
    for pub in pubs:
        n = sent.get(pub, 0)
        maps = [m[pub] for m in bitmaps if pub in m]
        union = bitmap_union(maps) if len(maps) > 1 else (bytes(maps[0]) if maps else b"")
        got = bitmap_count(union, min(n, len(union)))
        distinct += got
        unexpected += bitmap_count(union) - got
        cross += sum(bitmap_count(m, min(n, len(m))) for m in maps) - got
    return {
        "expected": expected,
        "distinct": distinct,
        "lost": expected - distinct,
        "cross_dups": cross,
        "unexpected": unexpected,
    }


class Counters:
    """Live counters shared by the workers and the orchestrator: 3 int64 slots per worker.

    Slot 3w: messages published by worker w (sequence numbers consumed); 3w+1: distinct
    messages its subscribers received; 3w+2: PUBLISH packets they received. Backed by a
    bytearray (one process) or an mmap of a file in /dev/shm (several processes).
    """

    SENT, DISTINCT, RECEIVED = 0, 1, 2

    def __init__(self, buffer: Any, workers: int) -> None:
        self.workers = workers
        self.mv = memoryview(buffer).cast("B").cast("q")

    @staticmethod
    def size(workers: int) -> int:
        return 24 * workers

    def total(self, kind: int) -> int:
        mv = self.mv
        if self.workers == 1:
            return int(mv[kind])
        return sum(mv[i] for i in range(kind, 3 * self.workers, 3))

    def release(self) -> None:
        self.mv.release()


# -- timelines ---------------------------------------------------------------------------------


def timeline_add(timeline: list[int], second: int, n: int) -> None:
    """Add ``n`` to 1-second bucket ``second`` (grown on demand; negative seconds go to 0)."""
    if second < 0:
        second = 0
    if second >= len(timeline):
        timeline.extend([0] * (second + 1 - len(timeline)))
    timeline[second] += n


def timeline_merge(timelines: Iterable[Sequence[int]]) -> list[int]:
    out: list[int] = []
    for tl in timelines:
        for i, n in enumerate(tl):
            if n:
                timeline_add(out, i, n)
    return out


# -- /proc readers -----------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """user + system CPU seconds of a process so far (/proc/PID/stat), None if unknown."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int | None, key: str = "VmRSS") -> int | None:
    """A kB figure from /proc/PID/status (``VmRSS``, ``VmHWM``), None if unknown."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_snapshot(pid: int | None) -> dict[str, Any]:
    """cpu_s, rss_kb and hwm_kb of a process (values None when it cannot be read)."""
    return {"cpu_s": cpu_seconds(pid), "rss_kb": proc_status_kb(pid), "hwm_kb": proc_status_kb(pid, "VmHWM")}
