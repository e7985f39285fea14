"""Per-client session state that outlives a connection: subscriptions, QoS flows, the queue.

A session delivers through its current connection when it has one, and queues
otherwise. The queue and the inflight window are both bounded: memory per
session never grows past ``max_queued_messages`` messages (overflow is dropped
and counted as ``queue_full``), whatever a slow or absent subscriber does.

Retained messages sent on SUBSCRIBE do not go through that queue: they wait in a *backlog*
of the retained store's own messages (a list of references per subscribed filter) and flow as
the window and the transport allow, so a subscriber of 5,000 retained QoS 1 messages gets all
5,000 whatever ``max_queued_messages`` is. While a backlog waits, new messages queue behind it,
so a retained (older) message never arrives after a live (newer) one.

Flow control: a connected QoS 1/2 subscriber with a window's worth of messages queued behind its
inflight window holds the broker's ``Backpressure``, so the publishers feeding it wait while it
catches up (their clients' packets are held, in order, see ``broker.connection``) instead of
filling its queue until it drops. It releases when its queue is down to half of that; still
holding after ``mqtt.flow_control_timeout``, it is *behind*: it releases, and holds again only
once its queue has emptied. So one slow subscriber slows its publishers (and so their other
subscribers) for at most that long at a time, and a fast flood into a healthy one drops nothing.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from mqhook.broker.message import Message, SubIds, SubOptions

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker
    from mqhook.broker.connection import Connection
    from mqhook.mqtt.packets import Will

# States of an outbound QoS 2 flow (section 4.3.3).
AWAIT_ACK = 0  # PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2)
AWAIT_COMP = 1  # PUBREL sent, waiting for PUBCOMP


_NO_IDS: frozenset[int] = frozenset()


class Outgoing:
    """One unacknowledged outbound QoS 1/2 message."""

    __slots__ = ("msg", "qos", "retain", "state", "sub_id")

    def __init__(self, msg: Message, qos: int, retain: bool, sub_id: SubIds) -> None:
        self.msg = msg
        self.qos = qos
        self.retain = retain
        self.sub_id = sub_id
        self.state = AWAIT_ACK


class Session:
    __slots__ = (
        "_behind",
        "_hold_at",
        "_hold_timer",
        "_holding",
        "awaiting_rel",
        "backlog",
        "broker",
        "client_id",
        "client_info",
        "conn",
        "dirty",
        "expiry_at",
        "expiry_interval",
        "expiry_timer",
        "inflight",
        "inflight_max",
        "max_queued",
        "next_pid",
        "q_tail",
        "queue",
        "stats",
        "subscriptions",
        "will",
        "will_at",
        "will_timer",
    )

    def __init__(self, broker: Broker, client_id: str, expiry_interval: int) -> None:
        self.broker = broker
        self.client_id = client_id
        # (username, peerhost, peername) of the latest connection: events about an offline session use it.
        self.client_info: tuple[str | None, str, str] = (None, "undefined", "undefined")
        self.stats = broker.stats
        self.max_queued = broker.config.max_queued_messages
        self.expiry_interval = expiry_interval
        self.conn: Connection | None = None
        self.subscriptions: dict[str, SubOptions] = {}
        self.inflight: dict[int, Outgoing] = {}
        self.inflight_max = 32
        # Made on first use: most sessions never queue, and an empty deque costs ~600 bytes.
        self.queue: deque[tuple[Message, int, bool, SubIds]] | None = None
        # Retained messages still to send after SUBSCRIBEs: [messages, next index, max qos, sub id].
        self.backlog: deque[list[Any]] | None = None
        # Inbound QoS 2 packet ids before PUBREL; a shared empty frozenset until the first one.
        self.awaiting_rel: set[int] | frozenset[int] = _NO_IDS
        self.next_pid = 1
        self.expiry_timer: Any = None
        self.expiry_at: float | None = None  # offline: when the session expires (broker clock), None: never
        self.will: Will | None = None  # a delayed will waiting to be published
        self.will_at = 0.0  # when that will is due (broker clock)
        self.will_timer: Any = None
        # durable_sessions (broker.journal): the journal's set of sessions whose state changed since its
        # last collect, None when nothing is persisted; and how many entries the queue ever took, so the
        # journal knows each entry's sequence number (the queue is FIFO: head = q_tail - len(queue)).
        self.dirty: set[Session] | None = broker.dirty_sessions
        self.q_tail = 0
        self._holding = False  # holds Backpressure: its publishers wait
        self._hold_at = 1  # queued messages from which it holds (set when a connection attaches)
        self._behind = False  # held past flow_control_timeout: does not hold again until its queue empties
        self._hold_timer: Any = None

    # -- delivery (hot path) ------------------------------------------------

    def deliver(self, msg: Message, qos: int, retain: bool, sub_id: SubIds) -> None:
        """Send now if the connection has room, else queue (bounded). Never blocks."""
        conn = self.conn
        if conn is not None:
            if not conn.saturated:
                if self.backlog is None:
                    if qos == 0:
                        conn.send_publish(msg, 0, retain, None, sub_id, False)
                        return
                    if not self.queue and len(self.inflight) < self.inflight_max:
                        self._send_inflight(conn, msg, qos, retain, sub_id)
                        return
            elif qos == 0:
                self.dropped(msg, qos, "qos0_msg")
                return
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        if len(queue) >= self.max_queued:
            self.dropped(msg, qos, "queue_full" if qos else "qos0_msg")
            return
        queue.append((msg, qos, retain, sub_id))
        self.q_tail += 1
        dirty = self.dirty
        if dirty is not None:
            dirty.add(self)
        if qos and conn is not None:
            if self._holding:
                self.broker.backpressure.note_fed(self)
            elif not self._behind and len(queue) >= self._hold_at:
                self._hold_publishers()

    # -- flow control -----------------------------------------------------

    def _hold_publishers(self) -> None:
        """A message for us was queued and we are a window behind: its publisher waits for us."""
        timeout = self.broker.config.flow_control_timeout
        if not timeout:
            return
        backpressure = self.broker.backpressure
        self._holding = True
        self.broker.flow_gauges["subscribers_behind"] += 1
        backpressure.hold(self)
        self._hold_timer = self.broker.clock.call_later(timeout, self._hold_expired)
        backpressure.note_fed(self)

    def _hold_expired(self) -> None:
        """Still behind after flow_control_timeout: let the publishers go; our queue takes the rest."""
        self._hold_timer = None
        self._behind = True
        self.stats.flow_control_timeouts += 1
        self.release_publishers()

    def release_publishers(self) -> None:
        """Stop holding our publishers (caught up, left behind, gone offline or ended)."""
        if not self._holding:
            return
        self._holding = False
        self.broker.flow_gauges["subscribers_behind"] -= 1
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        # Every publisher we held replays what it held, a few packets at a time in turn (see
        # Connection._replay), so each gets its share of our room, not the first alone.
        self.broker.backpressure.release(self)

    def dropped(self, msg: Message, qos: int, reason: str) -> None:
        """Count (and report) one copy for this session that will never be sent."""
        self.stats.deliveries_dropped[reason] += 1
        fire = self.broker.hooks.delivery_dropped
        if fire is not None:
            fire(msg, self, qos, reason)

    def _send_inflight(self, conn: Connection, msg: Message, qos: int, retain: bool, sub_id: SubIds) -> None:
        inflight = self.inflight
        dirty = self.dirty
        if dirty is not None:
            dirty.add(self)
        # The next packet id not in flight, from next_pid on (wrapping at 65535).
        pid = self.next_pid
        while pid in inflight:
            pid = pid + 1 if pid < 65535 else 1
        self.next_pid = pid + 1 if pid < 65535 else 1
        inflight[pid] = Outgoing(msg, qos, retain, sub_id)
        if not conn.send_publish(msg, qos, retain, pid, sub_id, False):
            del inflight[pid]  # not sendable (too large or expired): the flow ends here

    def deliver_retained(self, messages: list[Message], qos: int, sub_id: int | None) -> None:
        """The retained messages of one new subscription (granted ``qos``): sent as the window and the
        transport allow, after any retained backlog of earlier subscriptions, before new messages."""
        if not messages:
            return
        if self.backlog is None:
            self.backlog = deque()
        self.backlog.append([messages, 0, qos, sub_id])
        self.drain()

    def _drain_backlog(self, conn: Connection) -> bool:
        """Send retained messages while the window and the transport allow; True once none is left."""
        backlog = self.backlog
        assert backlog is not None
        while backlog:
            chunk = backlog[0]
            messages, i, granted, sub_id = chunk
            while i < len(messages):
                if conn.saturated:
                    chunk[1] = i
                    return False
                msg = messages[i]
                qos = granted if granted < msg.qos else msg.qos
                if qos == 0:
                    conn.send_publish(msg, 0, True, None, sub_id, False)
                elif len(self.inflight) < self.inflight_max:
                    self._send_inflight(conn, msg, qos, True, sub_id)
                else:
                    chunk[1] = i
                    return False
                i += 1
            backlog.popleft()
        self.backlog = None
        return True

    def drain(self) -> None:
        """Move retained, then queued messages to the connection while the window and the transport allow."""
        conn = self.conn
        if conn is None:
            return
        if self.backlog is not None and not self._drain_backlog(conn):
            return
        queue = self.queue
        dirty = self.dirty
        if queue and dirty is not None:
            dirty.add(self)
        inflight = self.inflight
        while queue and not conn.saturated:
            msg, qos, retain, sub_id = queue[0]
            if qos == 0:
                queue.popleft()
                conn.send_publish(msg, 0, retain, None, sub_id, False)
            elif len(inflight) < self.inflight_max:
                queue.popleft()
                self._send_inflight(conn, msg, qos, retain, sub_id)
            else:
                break
        if not queue:
            self._behind = False
        if self._holding and (not queue or len(queue) <= self._hold_at // 2):
            self.release_publishers()

    # -- acknowledgements ---------------------------------------------------

    def on_puback(self, pid: int) -> Outgoing | None:
        """The finished QoS 1 flow, or None if ``pid`` names none."""
        inflight = self.inflight
        entry = inflight.get(pid)
        if entry is None or entry.qos != 1:
            return None
        del inflight[pid]
        dirty = self.dirty
        if dirty is not None:
            dirty.add(self)
        self.drain()
        return entry

    def on_pubrec(self, pid: int, failed: bool) -> bool:
        """True if the flow exists (the caller answers PUBREL); a failed PUBREC ends the flow."""
        entry = self.inflight.get(pid)
        if entry is None or entry.qos != 2:
            return False
        dirty = self.dirty
        if dirty is not None:
            dirty.add(self)
        if failed:
            del self.inflight[pid]
            self.drain()
        else:
            entry.state = AWAIT_COMP
        return True

    def on_pubcomp(self, pid: int) -> Outgoing | None:
        """The finished QoS 2 flow, or None if ``pid`` names none."""
        entry = self.inflight.get(pid)
        if entry is None or entry.state != AWAIT_COMP:
            return None
        del self.inflight[pid]
        dirty = self.dirty
        if dirty is not None:
            dirty.add(self)
        self.drain()
        return entry

    # -- connection changes -------------------------------------------------

    def resume(self, conn: Connection) -> None:
        """Attach a new connection: resend unacknowledged flows with DUP [MQTT-4.4.0-1], then drain."""
        self.conn = conn
        self.expiry_at = None
        if self.dirty is not None:
            self.dirty.add(self)
        # Queued messages from which it holds its publishers: one window, and at most half of the
        # queue's bound, so that it holds before it drops.
        self._hold_at = max(1, min(self.inflight_max, self.max_queued // 2))
        for pid, entry in list(self.inflight.items()):
            if entry.state == AWAIT_COMP:
                conn.send_pubrel(pid)
            elif not conn.send_publish(entry.msg, entry.qos, entry.retain, pid, entry.sub_id, True):
                del self.inflight[pid]
        self.drain()

    def clear_flows(self) -> None:
        if self.dirty is not None:
            self.dirty.add(self)
        self.release_publishers()
        self.inflight.clear()
        self.queue = None
        self.backlog = None
        self.awaiting_rel = _NO_IDS
