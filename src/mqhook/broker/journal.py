"""What changed in the persistent sessions and the retained messages, for ``mqtt.durable_sessions``.

The broker's hot paths do no disk I/O: they only add a session to ``Journal.sessions`` (a set every
``Session`` holds as ``dirty``), a session to ``Journal.subscriptions`` when its subscriptions change,
or a topic to ``Journal.retained``. ``collect`` (called by the store, ``mqhook.persist``, every few tens
of milliseconds on the broker's thread) turns those into change records by comparing each changed
session with what it handed out before, and forgets the marks; the store writes the records in one
transaction on its own thread. Collecting costs what changed, not what is kept:

- a session's queue is FIFO, so an entry's sequence number is implicit (``Session.q_tail`` counts
  what was ever queued; the head is ``q_tail - len(queue)``): the journal remembers which range it
  handed out and reports the entries queued since and how far the head moved;
- in-flight flows (at most the window) are compared by identity and state;
- subscriptions are compared only when ``subscriptions`` says they changed;
- the session's own record (expiry, packet ids awaiting PUBREL, a delayed will) when it differs.

Only sessions with a Session Expiry Interval above 0 are kept; a session that ends, or whose
interval drops to 0, is reported dropped. Records hold references to the broker's immutable objects
(``Message``, ``SubOptions``, ``Will``); the store serialises them on its thread.

Change records (tuples, first item the kind):

- ``("wipe",)``: forget everything kept (after a failed write, everything is reported again);
- ``("session", client_id, expiry_interval, expiry_at, awaiting_rel, will, will_at)``:
  ``expiry_at`` and ``will_at`` on the broker's clock (``expiry_at`` None while connected or never);
- ``("drop", client_id)``: the session and all its rows are gone;
- ``("sub", client_id, SubOptions)`` / ``("unsub", client_id, topic_filter)``;
- ``("trim", client_id, head)``: queue entries before sequence number ``head`` left the queue;
- ``("queue", client_id, first_seq, [(msg, qos, retain, sub_id), ...])``: entries queued;
- ``("inflight", client_id, pid, msg, qos, retain, sub_id, state)`` / ``("unflight", client_id, pid)``;
- ``("retain", topic, msg)`` / ``("unretain", topic)``.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker
    from mqhook.broker.message import SubOptions
    from mqhook.broker.session import Outgoing, Session

__all__ = ["Journal"]


class _Kept:
    """What the journal last reported of one session."""

    __slots__ = ("head", "inflight", "meta", "session", "subs", "tail")

    def __init__(self, session: Session, head: int) -> None:
        self.session = session
        self.head = head  # queue entries [head, tail) were reported queued and not yet trimmed
        self.tail = head
        self.inflight: dict[int, tuple[Outgoing, int]] = {}
        self.subs: dict[str, SubOptions] = {}
        self.meta: tuple[Any, ...] | None = None


def _meta(session: Session) -> tuple[Any, ...]:
    will = session.will
    return (
        session.expiry_interval,
        session.expiry_at if session.conn is None else None,
        tuple(sorted(session.awaiting_rel)),
        will,
        session.will_at if will is not None else None,
    )


class Journal:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.sessions: set[Session] = set()  # changed since the last collect (flows, queue, expiry, will)
        self.subscriptions: set[Session] = set()  # whose subscriptions changed
        self.retained: set[str] = set()  # topics whose retained message changed
        self.writing = 0  # change records being written by the store
        self._kept: dict[str, _Kept] = {}
        self._wipe = False

    @property
    def unflushed(self) -> int:
        """Sessions and topics marked changed and not yet collected, plus the change records of the
        batch being written (``writing``, set by the store): 0 when everything is on disk."""
        return len(self.sessions) + len(self.subscriptions) + len(self.retained) + self.writing

    def collect(self) -> list[tuple[Any, ...]]:
        """The change records since the last call (see the module's docstring); the marks are cleared."""
        ops: list[tuple[Any, ...]] = []
        if self._wipe:
            self._wipe = False
            ops.append(("wipe",))
        dirty, subs_dirty = self.sessions, self.subscriptions
        if dirty or subs_dirty:
            # Sessions hold ``dirty`` itself: cleared in place, never replaced.
            changed = {s.client_id for s in dirty}
            subs_changed = {s.client_id for s in subs_dirty}
            dirty.clear()
            subs_dirty.clear()
            changed |= subs_changed
            live = self.broker.sessions
            kept = self._kept
            for cid in changed:
                session = live.get(cid)
                rec = kept.get(cid)
                keep = session is not None and session.expiry_interval != 0
                if rec is not None and (not keep or rec.session is not session):
                    ops.append(("drop", cid))
                    del kept[cid]
                    rec = None
                if not keep:
                    continue
                assert session is not None
                if rec is None:
                    queue = session.queue
                    rec = kept[cid] = _Kept(session, session.q_tail - (len(queue) if queue else 0))
                    self._session(session, rec, True, ops)
                else:
                    self._session(session, rec, cid in subs_changed, ops)
        topics = self.retained
        if topics:
            retained = self.broker.retained
            for topic in topics:
                msg = retained.get(topic)
                ops.append(("unretain", topic) if msg is None else ("retain", topic, msg))
            topics.clear()
        return ops

    def _session(self, session: Session, rec: _Kept, subs: bool, ops: list[tuple[Any, ...]]) -> None:
        cid = session.client_id
        meta = _meta(session)
        if meta != rec.meta:
            rec.meta = meta
            ops.append(("session", cid, *meta))
        if subs:
            now = session.subscriptions
            before = rec.subs
            for full in before:
                if full not in now:
                    ops.append(("unsub", cid, full))
            for full, opts in now.items():
                if before.get(full) is not opts:
                    ops.append(("sub", cid, opts))
            rec.subs = dict(now)
        queue = session.queue
        tail = session.q_tail
        head = tail - (len(queue) if queue else 0)
        if head > rec.head:
            if rec.tail > rec.head:  # some reported entries left the queue
                ops.append(("trim", cid, head))
            rec.head = head
        start = rec.tail if rec.tail > head else head
        if tail > start:
            assert queue is not None
            entries = list(islice(reversed(queue), tail - start))
            entries.reverse()
            ops.append(("queue", cid, start, entries))
        rec.tail = tail
        now_flight = session.inflight
        was = rec.inflight
        if now_flight or was:
            for pid, (out, _state) in was.items():
                cur = now_flight.get(pid)
                if cur is None or cur is not out:
                    ops.append(("unflight", cid, pid))
            for pid, out in now_flight.items():
                prev = was.get(pid)
                if prev is None or prev[0] is not out or prev[1] != out.state:
                    ops.append(("inflight", cid, pid, out.msg, out.qos, out.retain, out.sub_id, out.state))
            rec.inflight = {pid: (out, out.state) for pid, out in now_flight.items()}

    def adopt(self, session: Session, first_seq: int) -> None:
        """A session restored from disk: what it holds is kept already (nothing to report)."""
        rec = self._kept[session.client_id] = _Kept(session, first_seq)
        rec.tail = session.q_tail
        rec.subs = dict(session.subscriptions)
        rec.inflight = {pid: (out, out.state) for pid, out in session.inflight.items()}
        rec.meta = _meta(session)
        self.sessions.discard(session)
        self.subscriptions.discard(session)

    def resync(self) -> None:
        """A write failed: the next ``collect`` wipes the store and reports everything again."""
        self._wipe = True
        self._kept.clear()
        broker = self.broker
        self.sessions.update(s for s in broker.sessions.values() if s.expiry_interval != 0)
        self.subscriptions.update(self.sessions)
        self.retained.update(m.topic for m in broker.retained.all())  # type: ignore[attr-defined]
