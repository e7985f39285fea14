"""The durable webhook spool: events on disk until the receiver took them, behind ``EventQueue``.

Storage (chosen by measurement, ``bench/spool_store.py``; see README "Reliability"): a directory per
webhook, ``<data_dir>/spool/<name>/``, holding

- ``seg-<first seq, 16 hex>.log``: segment files, pre-allocated (``posix_fallocate``, so a full disk
  is an error when a segment is made, never a SIGBUS later) and memory-mapped. ``put`` copies the
  record into the mapping: when it returns, the bytes are in the kernel's page cache and survive a
  crash of the process, without a system call per event (measured 0.5 us/event against 0.8 for a
  ``write`` per event and 2.2 for SQLite in WAL mode with one commit per 100 events);
- ``ack``: the acknowledged position, every sequence number below it is done (16 bytes: seq, crc);
- ``id``: the spool's identity (random, made once), part of every ``webhook-id`` it sends;
- ``lock``: ``flock``-ed while a process has the spool open (``mqhook deadletters`` checks it);
- ``dead.log``: the dead letters (``deadletter.DeadLetters``).

A record: ``<magic u32><length u32><crc32 u32>`` then ``<seq u64><key length u16><key><data>``
(``length`` and ``crc32`` over everything after the first 12 bytes). A
record cut by a crash reads as zeros or fails its checksum (a key longer than 65535 bytes cannot
occur: MQTT client ids are shorter). Recovery reads every segment; a record
whose checksum fails, or that is cut short, is reported (log line, ``corrupt`` counter) and skipped,
the scan resumes at the next magic; everything at or after the ``ack`` position is replayed, in order.

Group commit (``fsync``): ``"interval"`` syncs the segments written since the last commit every
``fsync_interval`` in a worker thread (the loop never waits for the disk); ``"always"`` syncs on the
loop in a callback scheduled by the first ``put`` of a loop turn, which also holds the broker's
output (``mqhook.broker.flow.SyncBarrier``) until that sync is done, so no PUBACK of those events
reaches a socket before them; ``"never"`` never syncs (the page cache still survives a process
crash). Each commit also writes the ``ack`` position
and deletes the segments wholly below it.

Acknowledgements arrive out of order (several requests in flight); the ``ack`` position only moves
over a contiguous prefix, so after a crash the events done beyond it are sent again (with the same
``webhook-id``): at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
import os
import struct
import zlib
from collections import deque
from collections.abc import Collection
from pathlib import Path
from typing import Any

from mqhook.webhook.queue import HIGH_WATER, LOW_WATER, Entry, EventQueue

__all__ = ["Spool", "SpoolLocked", "SpoolQueue", "read_framed", "read_records", "spool_dir"]

log = logging.getLogger("mqhook.webhook")

MAGIC = 0x4C4F4F53  # b"SOOL" little-endian: b"SOOL"
HEAD = struct.Struct("<III")  # magic, length of the rest, crc32 of the rest
REST = struct.Struct("<QH")  # seq, key length
ACK = struct.Struct("<QI")  # position, crc32 of the position
MAGIC_BYTES = struct.pack("<I", MAGIC)
SEGMENT_MIN = 1 << 20
SEGMENT_MAX = 64 << 20
FSYNC_MODES = ("interval", "always", "never")


class SpoolLocked(OSError):
    """Another process has this spool open."""


def spool_dir(data_dir: str | os.PathLike[str], name: str) -> Path:
    return Path(data_dir) / "spool" / name


def record_size(data: bytes, key: bytes) -> int:
    return HEAD.size + REST.size + len(key) + len(data)


def read_framed(buf: bytes | mmap.mmap, start: int = 0) -> tuple[list[bytes], int, int]:
    """The bodies of the intact frames (magic, length, crc32) of ``buf`` -> (bodies, corrupt regions, end).

    A frame that fails its checksum or is cut short is skipped (counted once per corrupt region) and the
    scan resumes at the next magic; an all-zero head that no later magic follows is the unwritten tail."""
    out: list[bytes] = []
    corrupt = 0
    size = len(buf)
    pos = end = start
    bad = False  # inside a corrupt region (counted once)
    while pos + HEAD.size <= size:
        magic, length, crc = HEAD.unpack_from(buf, pos)
        stop = pos + HEAD.size + length
        if magic == MAGIC and stop <= size:
            body = bytes(buf[pos + HEAD.size : stop])
            if zlib.crc32(body) == crc:
                out.append(body)
                pos = end = stop
                bad = False
                continue
        nxt = buf.find(MAGIC_BYTES, pos + 1)
        if magic == 0 and length == 0 and crc == 0 and nxt < 0:
            break  # the pre-allocated, never written tail
        if not bad:
            corrupt += 1
            bad = True
        if nxt < 0:
            break
        pos = nxt
    return out, corrupt, end


def read_records(buf: bytes | mmap.mmap) -> tuple[list[tuple[int, str, bytes]], int, int]:
    """Every intact record of one segment -> ([(seq, key, data)], corrupt regions, end of the last)."""
    bodies, corrupt, end = read_framed(buf)
    out = []
    for body in bodies:
        if len(body) < REST.size:
            corrupt += 1
            continue
        seq, klen = REST.unpack_from(body, 0)
        if REST.size + klen > len(body):
            corrupt += 1
            continue
        out.append((seq, body[REST.size : REST.size + klen].decode("utf-8", "replace"), body[REST.size + klen :]))
    return out, corrupt, end


class _Segment:
    __slots__ = ("dirty", "fd", "first", "last", "mm", "path", "pos", "size")

    def __init__(self, path: Path, first: int, size: int, create: bool) -> None:
        self.path = path
        self.first = first
        self.last = first - 1  # highest seq in it
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self.fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.posix_fallocate(self.fd, 0, size)
            self.size = os.fstat(self.fd).st_size
            self.mm: mmap.mmap | None = mmap.mmap(self.fd, self.size) if self.size else None
        except BaseException:
            os.close(self.fd)
            if create:
                path.unlink(missing_ok=True)
            raise
        self.pos = 0
        self.dirty = False

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Spool:
    """The files of one durable webhook (see the module docstring). One writer, the loop's thread."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        segment_bytes: int = SEGMENT_MAX,
        fsync: str = "interval",
        fsync_interval: float = 0.01,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = max(SEGMENT_MIN, min(SEGMENT_MAX, segment_bytes))
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.corrupt = 0  # corrupt or cut records found at start-up
        self.closed = False
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLocked(f"{self.dir} is open in another process (is mqhook running?)") from None
        self.ident = self._identity()
        self.acked = self._read_ack()
        self._ack_fd = os.open(self.dir / "ack", os.O_WRONLY | os.O_CREAT, 0o600)
        self._acked_written = self.acked
        self._done: set[int] = set()  # acknowledged beyond the contiguous prefix
        self._segments: list[_Segment] = []
        self.recovered: list[tuple[bytes, str, int]] = self._recover()
        self.next_seq = max([self.acked, *(s.last + 1 for s in self._segments)])
        self._head: _Segment | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed = False  # a commit is scheduled
        self._puts = False  # puts since the last commit
        # fsync = "always": the broker's output waits on this barrier while events put are not synced
        # (``mqhook.broker.flow.SyncBarrier``; set by the webhook manager). None: nothing waits.
        self.barrier: Any = None
        self._holding = False  # we hold the barrier (released by the commit)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # Positions lost to corruption are done: the ack position must not wait for them.
        present = {seq for _, _, seq in self.recovered}
        self._done.update(seq for seq in range(self.acked, self.next_seq) if seq not in present)
        self.ack(())

    # -- start-up -----------------------------------------------------------------------------------
    def _identity(self) -> str:
        path = self.dir / "id"
        try:
            ident = path.read_text().strip()
            if ident:
                return ident
        except FileNotFoundError:
            pass
        ident = os.urandom(6).hex()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(ident + "\n")
        os.replace(tmp, path)
        return ident

    def _read_ack(self) -> int:
        try:
            raw = (self.dir / "ack").read_bytes()
        except FileNotFoundError:
            return 0
        if not raw:  # made, never written: nothing acknowledged yet
            return 0
        if len(raw) >= ACK.size:
            pos, crc = ACK.unpack_from(raw)
            if zlib.crc32(struct.pack("<Q", pos)) == crc:
                return int(pos)
        log.error("spool %s: the ack file is corrupt; every spooled event is sent again", self.dir)
        return 0

    def _recover(self) -> list[tuple[bytes, str, int]]:
        out: list[tuple[bytes, str, int]] = []
        for path in sorted(self.dir.glob("seg-*.log")):
            try:
                first = int(path.stem[4:], 16)
            except ValueError:
                continue
            seg = _Segment(path, first, 0, create=False)
            records, corrupt, seg.pos = read_records(seg.mm) if seg.mm is not None else ([], 0, 0)
            if corrupt:
                self.corrupt += corrupt
                log.error(
                    "spool %s: %s has %d corrupt or cut record(s) (a torn write?), skipped; the rest is replayed",
                    self.dir,
                    path.name,
                    corrupt,
                )
            if not records:  # nothing to replay (never written, or all corrupt): its name is free again
                seg.close()
                path.unlink(missing_ok=True)
                continue
            for seq, key, data in records:
                seg.last = max(seg.last, seq)
                if seq >= self.acked:
                    out.append((data, key, seq))
            self._segments.append(seg)
        out.sort(key=lambda e: e[2])
        if out:
            log.info("spool %s: %d event(s) to deliver again, first", self.dir, len(out))
        return out

    # -- writing (the loop's thread) ----------------------------------------------------------------
    def append(self, data: bytes, key: str) -> int:
        """Copy one record into the head segment (page cache); returns its seq. OSError if no room on disk.

        One bytes object, one copy into the mapping (measured: a third of the cost of writing the
        parts one by one). A process killed inside the copy leaves a record that fails its checksum;
        its PUBLISH was not acknowledged."""
        kb = key.encode()
        seq = self.next_seq
        prefix = REST.pack(seq, len(kb)) + kb
        length = len(prefix) + len(data)
        n = HEAD.size + length
        seg = self._head
        if seg is None or seg.pos + n > seg.size:
            seg = self._new_segment(n)
        pos = seg.pos
        head = HEAD.pack(MAGIC, length, zlib.crc32(data, zlib.crc32(prefix)))
        seg.mm[pos : pos + n] = b"".join((head, prefix, data))  # type: ignore[index]
        seg.pos = pos + n
        seg.last = seq
        seg.dirty = True
        self.next_seq = seq + 1
        self._puts = True
        barrier = self.barrier
        if barrier is not None and not self._holding and self.fsync == "always" and self._loop is not None:
            barrier.hold()  # nothing acknowledging this event may leave before the commit
            self._holding = True
        if not self._armed:
            self._arm()
        return seq

    def _new_segment(self, need: int) -> _Segment:
        size = max(self.segment_bytes, (need + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)
        first = self.next_seq
        seg = _Segment(self.dir / f"seg-{first:016x}.log", first, size, create=True)
        self._segments.append(seg)
        self._head = seg
        return seg

    def ack(self, seqs: Collection[int]) -> None:
        """These events are done (delivered, or given up for good)."""
        done = self._done
        acked = self.acked
        for seq in sorted(seqs):
            if seq == acked:
                acked += 1
                while acked in done:
                    done.discard(acked)
                    acked += 1
            elif seq > acked:
                done.add(seq)
        while acked in done:  # (a gap known done, e.g. positions lost to corruption)
            done.discard(acked)
            acked += 1
        self.acked = acked
        if acked != self._acked_written and not self._armed:
            self._arm()

    # -- group commit -------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.fsync != "always" and self._task is None:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._committer(), name=f"spool-{self.dir.name}")
        if self._puts or self.acked != self._acked_written:
            self._armed = False
            self._arm()

    def _arm(self) -> None:
        loop = self._loop
        if loop is None or self.closed:
            return
        self._armed = True
        if self.fsync == "always":
            loop.call_soon(self._commit_now)
        elif self._wake is not None:
            self._wake.set()

    def _commit_now(self) -> None:
        """fsync = "always": sync on the loop (queued by the turn's first put), then let the output
        that waited on the barrier go: the PUBACKs of those events leave after their sync."""
        self._armed = False
        if self.closed:  # closed meanwhile: its last commit was made by close()
            self._let_go()
            return
        try:
            self._sync_segments()
            self._write_ack(sync=False)  # (losing the ack position only sends events again)
            self._compact()
        except OSError as exc:
            log.error("spool %s: commit failed: %s", self.dir, exc)
        finally:
            self._let_go()

    def _sync_segments(self) -> None:
        self._puts = False
        for seg in self._segments:
            if seg.dirty and seg.fd >= 0:
                seg.dirty = False
                os.fdatasync(seg.fd)

    async def _committer(self) -> None:
        assert self._wake is not None and self._loop is not None
        loop = self._loop
        while not self.closed:
            await self._wake.wait()
            await asyncio.sleep(self.fsync_interval)
            self._wake.clear()
            self._armed = False
            await self.commit(loop)

    async def commit(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """One group commit (interval / never): the segments written since the last one are synced
        and the ack position written, in a worker thread (the loop never waits for the disk)."""
        self._puts = False
        fds = []
        for seg in self._segments:
            if seg.dirty and seg.fd >= 0:
                seg.dirty = False
                fds.append(seg.fd)
        pos = self.acked
        ack_fd = self._ack_fd if pos != self._acked_written else -1
        sync = self.fsync == "interval"
        if not (sync and fds) and ack_fd < 0:
            self._compact()
            return
        try:
            # The ack position is written, not synced: losing it only sends events again.
            await (loop or asyncio.get_running_loop()).run_in_executor(
                None, _sync_all, fds if sync else [], ack_fd, pos, False
            )
            if ack_fd >= 0:
                self._acked_written = pos
            self._compact()
        except OSError as exc:
            log.error("spool %s: commit failed: %s", self.dir, exc)

    def _write_ack(self, sync: bool) -> None:
        if self.acked == self._acked_written:
            return
        pos = self.acked
        _write_ack(self._ack_fd, pos, sync)
        self._acked_written = pos

    def _compact(self) -> None:
        """Delete the segments whose every record is acknowledged (never the head)."""
        keep = []
        for seg in self._segments:
            if seg is not self._head and seg.last < self._acked_written:
                seg.close()
                seg.path.unlink(missing_ok=True)
            else:
                keep.append(seg)
        self._segments = keep

    @property
    def disk_bytes(self) -> int:
        """Bytes of records in the segment files still kept."""
        return sum(seg.pos for seg in self._segments)

    async def close(self) -> None:
        """A last commit (synced unless fsync = "never"), then the files are closed and unlocked."""
        if self.closed:
            return
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            if self.fsync != "never":
                self._sync_segments()
            self._write_ack(sync=self.fsync != "never")
            self._compact()
        except OSError as exc:
            log.error("spool %s: final commit failed: %s", self.dir, exc)
        self.close_files()

    def _let_go(self) -> None:
        """Release the broker's output if this spool holds it (a commit done, or the spool closed)."""
        if self._holding:
            self._holding = False
            self.barrier.release()

    def close_files(self) -> None:
        self.closed = True
        self._let_go()
        for seg in self._segments:
            seg.close()
        self._segments = []
        self._head = None
        if self._ack_fd >= 0:
            os.close(self._ack_fd)
            self._ack_fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _write_ack(fd: int, pos: int, sync: bool) -> None:
    os.pwrite(fd, ACK.pack(pos, zlib.crc32(struct.pack("<Q", pos))), 0)
    if sync:
        os.fdatasync(fd)


def _sync_all(fds: list[int], ack_fd: int, pos: int, sync: bool) -> None:
    """The worker thread's part of a group commit: the segments first, then the ack position."""
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile (compacted): nothing left to sync
            os.fdatasync(fd)
    if ack_fd >= 0:
        _write_ack(ack_fd, pos, sync)


class SpoolQueue(EventQueue):
    """``EventQueue`` over a ``Spool``: events in memory for sending, on disk until ``done``.

    Bounded by ``max_events`` and ``max_bytes`` (``max_spool_bytes``): events in the spool and not
    done, queued or in flight (a request in flight still holds its events on disk); the overflow
    policies are ``MemoryQueue``'s, and ``drop_oldest`` can only evict queued events; an eviction
    acknowledges the evicted events (they are given up). An event the disk cannot take (no space for a new segment) is
    refused and counted ``queue_full``, whatever the policy; the error is logged once."""

    def __init__(self, spool: Spool, max_events: int, max_bytes: int, overflow: str, dropped: dict[str, int]) -> None:
        super().__init__()
        self.spool = spool
        self._q: deque[Entry] = deque()
        self._seqs: deque[int] = deque()
        self._popped: dict[int, int] = {}  # id(entry) -> seq, for the entries popped and not done
        self._bytes = 0
        self._live = 0  # events in the spool, not done (queued or in flight): what the bounds hold
        self._live_bytes = 0
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._drop_oldest = overflow == "drop_oldest"
        self._never_drop = overflow == "backpressure"
        self._dropped = dropped
        self._high_events = max(1, int(max_events * HIGH_WATER))
        self._high_bytes = max(1, int(max_bytes * HIGH_WATER))
        self._low_events = int(max_events * LOW_WATER)
        self._low_bytes = int(max_bytes * LOW_WATER)
        self._disk_error = False
        for data, key, seq in spool.recovered:  # replayed first, whatever the bounds
            self._q.append((data, key))
            self._seqs.append(seq)
            self._bytes += len(data)
        self._live, self._live_bytes = len(self._q), self._bytes
        spool.recovered = []

    def put(self, data: bytes, key: str) -> bool:
        size = len(data)
        if (
            (self._live >= self._max_events or self._live_bytes + size > self._max_bytes)
            and not self._never_drop
            and not self._make_room(size)
        ):
            self._dropped["queue_full"] += 1
            return False
        try:
            seq = self.spool.append(data, key)
        except OSError as exc:
            self._dropped["queue_full"] += 1
            if not self._disk_error:
                self._disk_error = True
                log.error("spool %s: cannot store events (%s); refusing them, counted queue_full", self.spool.dir, exc)
            return False
        self._q.append((data, key))
        self._seqs.append(seq)
        self._bytes += size
        self._live += 1
        self._live_bytes += size
        if self.waiter is not None and len(self._q) >= self.want:
            self.wake()
        return True

    def _make_room(self, size: int) -> bool:
        if not self._drop_oldest or size > self._max_bytes:
            return False
        q, seqs = self._q, self._seqs
        evicted: list[int] = []
        while q and (self._live >= self._max_events or self._live_bytes + size > self._max_bytes):
            n = len(q.popleft()[0])
            self._bytes -= n
            self._live -= 1
            self._live_bytes -= n
            evicted.append(seqs.popleft())
        self._dropped["queue_full"] += len(evicted)
        self.spool.ack(evicted)
        return self._live < self._max_events and self._live_bytes + size <= self._max_bytes

    def pop_batch(self, max_events: int, busy: Collection[str] | None = None) -> list[Entry]:
        q, seqs, popped = self._q, self._seqs, self._popped
        out: list[Entry] = []
        if not busy:
            for _ in range(min(max_events, len(q))):
                entry = q.popleft()
                popped[id(entry)] = seqs.popleft()
                out.append(entry)
        else:
            skipped: list[tuple[Entry, int]] = []
            scanned = 0
            while q and len(out) < max_events and scanned < 4096:
                entry, seq = q.popleft(), seqs.popleft()
                scanned += 1
                if entry[1] in busy:
                    skipped.append((entry, seq))
                else:
                    popped[id(entry)] = seq
                    out.append(entry)
            for entry, seq in reversed(skipped):
                q.appendleft(entry)
                seqs.appendleft(seq)
        self._bytes -= sum(len(e[0]) for e in out)
        return out

    def seq_of(self, entry: Entry) -> int:
        """The spool position of a popped entry (the ``webhook-id`` is made of it)."""
        return self._popped[id(entry)]

    def unpop(self, entries: list[Entry]) -> None:
        for entry in reversed(entries):
            self._seqs.appendleft(self._popped.pop(id(entry)))
            self._q.appendleft(entry)
        self._bytes += sum(len(e[0]) for e in entries)
        self._arrived(len(self._q))

    def done(self, entries: list[Entry]) -> None:
        pop = self._popped.pop
        seqs = []
        size = 0
        for e in entries:
            seq = pop(id(e), None)
            if seq is not None:
                seqs.append(seq)
                size += len(e[0])
        self._live -= len(seqs)
        self._live_bytes -= size
        self.spool.ack(seqs)

    def adopt(self, old: SpoolQueue) -> int:
        """Take over the queued events of ``old`` (same spool, a webhook's previous settings), in order,
        with their positions; nothing is written again. Returns how many."""
        n = len(old._q)
        self._q.extend(old._q)
        self._seqs.extend(old._seqs)
        self._bytes += old._bytes
        self._live += n  # (the events ``old`` has in flight finish there, counted there)
        self._live_bytes += old._bytes
        old.clear()
        self._arrived(len(self._q))
        return n

    def requeue_from(self, old: SpoolQueue, entries: list[Entry]) -> None:
        """Entries ``old`` popped whose request was cut short: back to this queue's head, in order."""
        for entry in reversed(entries):
            seq = old._popped.pop(id(entry), None)
            if seq is None:
                continue
            self._q.appendleft(entry)
            self._seqs.appendleft(seq)
            self._bytes += len(entry[0])
        self._arrived(len(self._q))

    def forget_popped(self, entries: list[Entry]) -> None:
        """Popped entries that stay in the spool without being done (a shutdown cut their request)."""
        for e in entries:
            self._popped.pop(id(e), None)

    def clear(self) -> int:
        """Empty the memory side; the events stay on disk (replayed at the next start)."""
        n = len(self._q)
        self._q.clear()
        self._seqs.clear()
        self._bytes = 0
        return n

    def __len__(self) -> int:
        return len(self._q)

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def over_high_water(self) -> bool:
        return self._live >= self._high_events or self._live_bytes >= self._high_bytes

    @property
    def under_low_water(self) -> bool:
        return self._live <= self._low_events and self._live_bytes <= self._low_bytes
