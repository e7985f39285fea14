"""``data_dir/sessions.db``: persistent sessions and retained messages in SQLite (WAL).

Synchronous and thread-agnostic: ``mqhook.persist.service`` calls it from one worker thread only.
``apply`` writes one batch of the broker journal's change records (``mqhook.broker.journal``) in one
transaction; ``load`` reads everything back as broker objects. Times are stored as wall-clock
seconds (``time.time()``); the caller passes ``offset`` = wall clock - broker clock, so an expiry
counts across a restart. With ``synchronous = NORMAL`` in WAL mode a committed batch survives a
crash of the process; a power loss may lose the last batches.

Rows: ``sessions`` (expiry, packet ids awaiting PUBREL, a delayed will), ``subscriptions``,
``queue`` (by sequence number, contiguous per session), ``inflight`` (by packet id, with the flow's
state) and ``retained``. Messages are msgpack arrays; each queued or in-flight copy carries its own.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from mqhook.broker.message import Message, SubIds, SubOptions
from mqhook.errors import MqhookError
from mqhook.mqtt.packets import Will

__all__ = ["FILE_NAME", "LoadedSession", "SessionStore", "SessionStoreError"]

FILE_NAME = "sessions.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) ;
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY, expiry_interval INTEGER NOT NULL, expires_at REAL,
    awaiting BLOB, will BLOB, will_at REAL) ;
CREATE TABLE IF NOT EXISTS subscriptions (
    client_id TEXT NOT NULL, filter TEXT NOT NULL, qos INTEGER NOT NULL, no_local INTEGER NOT NULL,
    rap INTEGER NOT NULL, retain_handling INTEGER NOT NULL, sub_id INTEGER,
    PRIMARY KEY (client_id, filter)) ;
CREATE TABLE IF NOT EXISTS queue (
    client_id TEXT NOT NULL, seq INTEGER NOT NULL, entry BLOB NOT NULL, PRIMARY KEY (client_id, seq)) ;
CREATE TABLE IF NOT EXISTS inflight (
    client_id TEXT NOT NULL, pid INTEGER NOT NULL, state INTEGER NOT NULL, entry BLOB NOT NULL,
    PRIMARY KEY (client_id, pid)) ;
CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, msg BLOB NOT NULL) ;
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


class SessionStoreError(MqhookError):
    """The session store cannot be opened or read."""


@dataclass
class LoadedSession:
    client_id: str
    expiry_interval: int
    expires_at: float | None  # wall clock; None: it was connected at the last write (or never expires)
    subscriptions: list[SubOptions] = field(default_factory=list)
    first_seq: int = 0
    queue: list[tuple[Message, int, bool, SubIds]] = field(default_factory=list)
    inflight: dict[int, tuple[Message, int, bool, SubIds, int]] = field(default_factory=dict)
    awaiting_rel: list[int] = field(default_factory=list)
    will: Will | None = None
    will_at: float | None = None  # wall clock


# -- messages <-> msgpack -----------------------------------------------------------------------------


def _props_in(props: dict[str, Any]) -> dict[str, Any]:
    pairs = props.get("User-Property")
    if pairs is not None:
        props["User-Property"] = [tuple(p) for p in pairs]
    return props


def _msg_out(msg: Message, offset: float) -> list[Any]:
    expiry = None if msg.expiry_at is None else msg.expiry_at + offset
    return [
        msg.topic,
        msg.payload,
        msg.qos,
        msg.retain,
        msg.properties,
        msg.sender,
        expiry,
        msg.username,
        msg.peerhost,
        msg.peername,
        msg.received_at,
    ]


def _msg_in(row: list[Any], offset: float) -> Message:
    topic, payload, qos, retain, props, sender, expiry, username, peerhost, peername, received_at = row
    msg = Message(
        topic,
        payload,
        qos,
        retain,
        _props_in(props),
        sender,
        None if expiry is None else expiry - offset,
        username,
        peerhost,
        False,
        peername,
    )
    msg.received_at = received_at
    return msg


def _sub_id_in(value: Any) -> SubIds:
    return tuple(value) if isinstance(value, list) else value


def encode_entry(msg: Message, qos: int, retain: bool, sub_id: SubIds, offset: float) -> bytes:
    return _encode([_msg_out(msg, offset), qos, retain, sub_id])


def decode_entry(blob: bytes, offset: float) -> tuple[Message, int, bool, SubIds]:
    msg, qos, retain, sub_id = _decode(blob)
    return _msg_in(msg, offset), qos, retain, _sub_id_in(sub_id)


class SessionStore:
    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.db: sqlite3.Connection | None = None

    def open(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fresh = not self.path.exists()
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if fresh:
                os.chmod(self.path, 0o600)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise SessionStoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise SessionStoreError(f"session store {str(self.path)!r} ($.data_dir): {exc}") from exc
        self.db = db

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    # -- reading ----------------------------------------------------------------------------------

    def load(self, offset: float) -> tuple[list[LoadedSession], list[Message]]:
        """Every kept session and retained message; ``offset`` = wall clock - broker clock. A
        session's queue rows are renumbered if they are not contiguous (never written so)."""
        db = self.db
        assert db is not None
        try:
            return self._load(db, offset)
        except (sqlite3.Error, msgspec.DecodeError, ValueError, TypeError) as exc:
            raise SessionStoreError(f"session store {str(self.path)!r}: cannot read it: {exc}") from exc

    def _load(self, db: sqlite3.Connection, offset: float) -> tuple[list[LoadedSession], list[Message]]:
        sessions: dict[str, LoadedSession] = {}
        for cid, interval, expires_at, awaiting, will, will_at in db.execute("SELECT * FROM sessions"):
            s = sessions[cid] = LoadedSession(cid, interval, expires_at)
            if awaiting:
                s.awaiting_rel = list(_decode(awaiting))
            if will is not None:
                topic, payload, qos, retain, props = _decode(will)
                s.will = Will(topic, payload, qos, retain, _props_in(props))
                s.will_at = will_at
        rows = db.execute("SELECT * FROM subscriptions ORDER BY client_id")
        for cid, topic_filter, qos, no_local, rap, rh, sub_id in rows:
            s1 = sessions.get(cid)
            if s1 is not None:
                s1.subscriptions.append(SubOptions(topic_filter, qos, bool(no_local), bool(rap), rh, sub_id))
        seqs: dict[str, list[int]] = {}
        for cid, seq, entry in db.execute("SELECT * FROM queue ORDER BY client_id, seq"):
            s2 = sessions.get(cid)
            if s2 is not None:
                s2.queue.append(decode_entry(entry, offset))
                seqs.setdefault(cid, []).append(seq)
        for cid, numbers in seqs.items():
            if numbers[-1] - numbers[0] + 1 == len(numbers):
                sessions[cid].first_seq = numbers[0]
            else:
                self._renumber(db, cid)
        for cid, pid, state, entry in db.execute("SELECT * FROM inflight"):
            s3 = sessions.get(cid)
            if s3 is not None:
                s3.inflight[pid] = (*decode_entry(entry, offset), state)
        retained = [_msg_in(_decode(blob), offset) for _topic, blob in db.execute("SELECT * FROM retained")]
        # Rows of no session (never written so, but cheap to keep tidy).
        for table in ("subscriptions", "queue", "inflight"):
            db.execute(f"DELETE FROM {table} WHERE client_id NOT IN (SELECT client_id FROM sessions)")
        return list(sessions.values()), retained

    @staticmethod
    def _renumber(db: sqlite3.Connection, cid: str) -> None:
        rows = db.execute("SELECT entry FROM queue WHERE client_id = ? ORDER BY seq", (cid,)).fetchall()
        db.execute("BEGIN")
        db.execute("DELETE FROM queue WHERE client_id = ?", (cid,))
        db.executemany("INSERT INTO queue VALUES (?, ?, ?)", ((cid, i, e) for i, (e,) in enumerate(rows)))
        db.execute("COMMIT")

    # -- writing ----------------------------------------------------------------------------------

    def apply(self, ops: list[tuple[Any, ...]], offset: float) -> None:
        """Write one batch of change records in one transaction (all or nothing)."""
        db = self.db
        assert db is not None
        ex = db.execute
        ex("BEGIN")
        try:
            for op in ops:
                kind = op[0]
                if kind == "inflight":
                    _, cid, pid, msg, qos, retain, sub_id, state = op
                    ex(
                        "INSERT OR REPLACE INTO inflight VALUES (?, ?, ?, ?)",
                        (cid, pid, state, encode_entry(msg, qos, retain, sub_id, offset)),
                    )
                elif kind == "unflight":
                    ex("DELETE FROM inflight WHERE client_id = ? AND pid = ?", (op[1], op[2]))
                elif kind == "queue":
                    _, cid, seq, entries = op
                    db.executemany(
                        "INSERT OR REPLACE INTO queue VALUES (?, ?, ?)",
                        (
                            (cid, seq + i, encode_entry(m, q, r, sid, offset))
                            for i, (m, q, r, sid) in enumerate(entries)
                        ),
                    )
                elif kind == "trim":
                    ex("DELETE FROM queue WHERE client_id = ? AND seq < ?", (op[1], op[2]))
                elif kind == "session":
                    _, cid, interval, expiry_at, awaiting, will, will_at = op
                    will_blob = None
                    if will is not None:
                        will_blob = _encode([will.topic, will.payload, will.qos, will.retain, will.properties])
                    ex(
                        "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            cid,
                            interval,
                            None if expiry_at is None else expiry_at + offset,
                            _encode(list(awaiting)) if awaiting else None,
                            will_blob,
                            None if will_at is None else will_at + offset,
                        ),
                    )
                elif kind == "sub":
                    cid, o = op[1], op[2]
                    ex(
                        "INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (cid, o.topic_filter, o.qos, o.no_local, o.rap, o.retain_handling, o.sub_id),
                    )
                elif kind == "unsub":
                    ex("DELETE FROM subscriptions WHERE client_id = ? AND filter = ?", (op[1], op[2]))
                elif kind == "drop":
                    for table in ("sessions", "subscriptions", "queue", "inflight"):
                        ex(f"DELETE FROM {table} WHERE client_id = ?", (op[1],))
                elif kind == "retain":
                    ex("INSERT OR REPLACE INTO retained VALUES (?, ?)", (op[1], _encode(_msg_out(op[2], offset))))
                elif kind == "unretain":
                    ex("DELETE FROM retained WHERE topic = ?", (op[1],))
                elif kind == "wipe":
                    for table in ("sessions", "subscriptions", "queue", "inflight", "retained"):
                        ex(f"DELETE FROM {table}")
                else:  # pragma: no cover - the journal makes no other kind
                    raise ValueError(f"unknown change record {kind!r}")
            ex("COMMIT")
        except BaseException:
            if db.in_transaction:
                ex("ROLLBACK")
            raise


def wall_offset(clock_now: float) -> float:
    """Wall clock minus the broker's clock, now."""
    return time.time() - clock_now
