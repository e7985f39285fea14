"""Dead letters: the events a webhook gave up on, kept on disk beside its spool for a later replay.

``<data_dir>/spool/<name>/dead.log``, records in the spool's framing (magic, length, crc32) whose
body is ``<at f64><reason length u16><key length u16><reason><key><data>``: when the event was given
up (unix seconds), why (``failed``: a status outside ``retry_on``; ``retries_exhausted``;
``expired``: older than ``max_event_age``), its clientid and its JSON. The file is bounded by
``max_dead_letter_bytes``: a dead letter that does not fit is refused (the caller counts it).

One process at a time changes the file (``dead.lock`` is ``flock``-ed by the owner, the daemon or
``mqhook deadletters``); ``list`` only reads. Replay and purge rewrite the file (write a
temporary file, fsync, rename): it is bounded and small next to the spool.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mqhook.webhook.spool import HEAD, MAGIC, read_framed

__all__ = ["DeadLetter", "DeadLetters", "DeadLettersLocked"]

log = logging.getLogger("mqhook.webhook")

BODY = struct.Struct("<dHH")
DeadLetter = tuple[float, str, str, bytes]  # at, reason, clientid, event JSON


class DeadLettersLocked(OSError):
    """Another process (the daemon) owns this dead-letter store."""


def _frame(at: float, reason: str, key: str, data: bytes) -> bytes:
    rb, kb = reason.encode()[:255], key.encode("utf-8")[:65535]
    body = BODY.pack(at, len(rb), len(kb)) + rb + kb + data
    return HEAD.pack(MAGIC, len(body), zlib.crc32(body)) + body


def _parse(body: bytes) -> DeadLetter | None:
    if len(body) < BODY.size:
        return None
    at, rlen, klen = BODY.unpack_from(body)
    o = BODY.size
    if o + rlen + klen > len(body):
        return None
    reason = body[o : o + rlen].decode("utf-8", "replace")
    key = body[o + rlen : o + rlen + klen].decode("utf-8", "replace")
    return at, reason, key, body[o + rlen + klen :]


def parse_time(text: str) -> float:
    """``--since``/``--until``, ``since``/``until``: unix seconds or an ISO 8601 time (UTC if no zone)."""
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def in_range(at: float, since: float | None, until: float | None) -> bool:
    return (since is None or at >= since) and (until is None or at < until)


class DeadLetters:
    """The dead-letter store of one webhook. ``owner=True`` takes the lock (raises DeadLettersLocked)."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, owner: bool = True, fsync: bool = True):
        self.dir = Path(directory)
        self.path = self.dir / "dead.log"
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock_fd = -1
        if owner:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / "dead.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DeadLettersLocked(f"{self.dir}: the dead letters are open in another process") from None
            self._lock_fd = fd
        items, corrupt = self._read()
        if corrupt:
            log.error("dead letters %s: %d corrupt record(s) skipped", self.path, corrupt)
        self.count = len(items)
        self.nbytes = self.path.stat().st_size if self.path.exists() else 0

    @staticmethod
    def locked(directory: str | os.PathLike[str]) -> bool:
        """True while another process owns the store at ``directory``."""
        path = Path(directory) / "dead.lock"
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _read(self) -> tuple[list[DeadLetter], int]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        bodies, corrupt, _ = read_framed(raw)
        out = [d for d in (_parse(b) for b in bodies) if d is not None]
        return out, corrupt + len(bodies) - len(out)

    def add(self, entries: Iterable[tuple[bytes, str]], reason: str, at: float) -> int:
        """Append; returns how many fit (the rest is refused: the store is full)."""
        chunks = []
        size = self.nbytes
        for data, key in entries:
            frame = _frame(at, reason, key, data)
            if size + len(frame) > self.max_bytes:
                break
            chunks.append(frame)
            size += len(frame)
        if not chunks:
            return 0
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b"".join(chunks))
            if self.fsync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        self.nbytes = size
        self.count += len(chunks)
        return len(chunks)

    def select(self, since: float | None = None, until: float | None = None) -> list[DeadLetter]:
        return [d for d in self._read()[0] if in_range(d[0], since, until)]

    def take(self, since: float | None = None, until: float | None = None) -> list[DeadLetter]:
        """Remove and return the dead letters given up in [since, until) (replay and purge)."""
        items = self._read()[0]
        taken = [d for d in items if in_range(d[0], since, until)]
        if taken:
            self._rewrite([d for d in items if not in_range(d[0], since, until)])
        return taken

    def put_back(self, items: list[DeadLetter]) -> None:
        """Dead letters a replay could not place (kept, at their old time)."""
        for at, reason, key, data in items:
            self.add([(data, key)], reason, at)

    def _rewrite(self, keep: list[DeadLetter]) -> None:
        tmp = self.path.with_suffix(".tmp")
        blob = b"".join(_frame(*d) for d in keep)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self.nbytes = len(blob)
        self.count = len(keep)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def as_json(item: DeadLetter) -> dict[str, Any]:
    """One dead letter as the API and the CLI list it."""
    import msgspec

    at, reason, key, data = item
    try:
        event: Any = msgspec.json.decode(data)
    except msgspec.DecodeError:
        event = data.decode("utf-8", "replace")
    return {"at": at, "reason": reason, "clientid": key, "event": event}
