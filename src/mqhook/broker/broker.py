"""The broker core's door: routing, subscriptions, the session registry, retained messages, wills,
and the seams the rest of mqhook plugs into.

This is the one routing interface: ``route(msg)`` finds every subscriber of a topic and hands each
its copy. A distributed engine later sits behind this class; nothing outside the broker package
touches the trie or the registry directly. What plugs in from outside, each an attribute of the
``Broker``:

- ``hooks`` (``broker.hooks.Hooks``): the hook points, filled by the events layer;
- ``backpressure`` (``broker.flow.Backpressure``): consumers that want publishers paused;
- ``authenticator`` and ``authorizer`` (``broker.auth``): who may connect, publish, subscribe;
- ``clock``: time and timers (the event loop; a manual clock in tests);
- ``stats``: the counters (``broker.stats.Stats``), read by the admin API and the metrics;
- ``cluster`` (``broker.broker.ClusterLink``, with ``[cluster]``): told of each local filter's
  interest and each locally published message; ``route_remote`` delivers what it brings from
  other nodes. None when not clustered: the hot path then tests one attribute;
- ``owners`` (``broker.broker.SessionOwnersLink``, with ``[cluster]``): told when a session's record
  in the cluster may need an update (per connect and disconnect, never per message);
- ``journal`` (``broker.journal.Journal``, with ``mqtt.durable_sessions``): what changed in the
  persistent sessions and the retained messages since it was last collected, for the store that
  writes it to disk (``mqhook.persist``); ``restore_session`` and ``restore_retained`` put back what
  it read at start-up.

The edge (``mqhook.server``) makes one ``Connection`` per accepted socket and talks only to it.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from mqhook.broker.auth import Authenticator, Authorizer
from mqhook.broker.connect import NEVER_EXPIRES
from mqhook.broker.flow import Backpressure, SyncBarrier
from mqhook.broker.hooks import Hooks
from mqhook.broker.journal import Journal
from mqhook.broker.message import Message, SubIds, SubOptions
from mqhook.broker.retained import RetainedStore
from mqhook.broker.session import Outgoing, Session
from mqhook.errors import ProtocolError
from mqhook.matcher import TopicTrie
from mqhook.mqtt import reason as R
from mqhook.mqtt.topics import parse_shared

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection
    from mqhook.broker.settings import MqttConfig
    from mqhook.broker.stats import Stats
    from mqhook.mqtt.packets import Will

log = logging.getLogger("mqhook.broker")


class Clock(Protocol):
    """What the broker needs from an event loop: time and timers (asyncio loops qualify)."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any: ...


class ClusterLink(Protocol):
    """What the broker tells the cluster bridge (``mqhook.cluster``), synchronously: the bridge queues
    its I/O. ``interest_added`` / ``interest_removed`` come once per subscription a session adds or
    drops (full filter, ``$share/...`` included; the bridge counts them); ``published`` once per
    message published on this node (not for those ``route_remote`` delivers)."""

    def interest_added(self, topic_filter: str) -> None: ...

    def interest_removed(self, topic_filter: str) -> None: ...

    def published(self, msg: Message) -> None: ...


class SessionOwnersLink(Protocol):
    """What the broker tells the cluster's session owners (``mqhook.cluster.sessions``), per CONNECT
    and disconnect only, never per message: ``changed(client_id)`` once a session's state may need
    the cluster's record updated (a connection left: its will fired, scheduled or dropped; the
    session ended; a delayed will went out); ``restored(session, will, will_in)`` takes a restored
    session's delayed will, to schedule only once the cluster confirms this node still owns it."""

    def changed(self, client_id: str) -> None: ...

    def restored(self, session: Session, will: Will, will_in: float) -> None: ...


class SharedGroup:
    """One ``$share/{group}/{filter}``: its members, served round-robin."""

    __slots__ = ("members", "name", "next")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: list[tuple[Session, SubOptions]] = []
        self.next = 0

    def pick(self) -> tuple[Session, SubOptions]:
        """Next member in turn, preferring one that is connected."""
        members = self.members
        n = len(members)
        for _ in range(n):
            i = self.next % n
            self.next = i + 1
            member = members[i]
            if member[0].conn is not None:
                return member
        return members[self.next % n]


class Broker:
    def __init__(self, config: MqttConfig, stats: Stats, clock: Clock) -> None:
        self.config = config
        self.stats = stats
        self.clock = clock
        self.trie = TopicTrie()
        self.retained = RetainedStore()
        self.sessions: dict[str, Session] = {}
        self.groups: dict[tuple[str, str], SharedGroup] = {}
        # durable_sessions: the change journal, and its set of changed sessions (every Session holds it
        # as ``dirty``; None when nothing is persisted, so the hot paths test one attribute).
        self.journal: Journal | None = Journal(self) if config.durable_sessions else None
        self.dirty_sessions: set[Session] | None = self.journal.sessions if self.journal is not None else None
        self.connections: set[Connection] = set()
        self.sockets = 0  # MQTT connections open, connected or not (Connection.__init__ .. connection_lost)
        # At most this many sockets; the composition root sets it from the file descriptor limit when
        # the setting is 0 (auto). Unset here, nothing is refused.
        self.max_connections = config.max_connections or 1 << 62
        self.subscription_count = 0
        self.hooks = Hooks()
        self.cluster: ClusterLink | None = None  # [cluster]: the bridge to the other nodes
        self.owners: SessionOwnersLink | None = None  # [cluster]: one owner per client id
        self.backpressure = Backpressure()
        self.barrier = SyncBarrier()  # output waits for fsync = "always" commits (durable webhooks)
        # Connections that do not read on, by why: "backpressure" (they hold what their client sends)
        # and "write_buffer_full" (their client does not read what we send); and QoS 1/2 sessions a
        # window behind that hold their publishers ("subscribers_behind"); and connections over their
        # messages_rate or bytes_rate, not read until their next window ("rate_limit").
        self.flow_gauges = {"backpressure": 0, "write_buffer_full": 0, "subscribers_behind": 0, "rate_limit": 0}
        self.authenticator = Authenticator()
        self.authorizer = Authorizer()
        self._single_copy = config.overlapping_subscriptions == "single_copy"
        # Limits (README "Limits"), read by connections on their hot paths as plain ints.
        self.messages_rate = config.messages_rate
        self.bytes_rate = config.bytes_rate.bytes
        self.rate_limited = bool(self.messages_rate or self.bytes_rate)
        # A PUBLISH topic name at least this long may be over max_topic_levels or max_topic_length
        # (a name of n characters has at most n + 1 levels and at most 4n bytes); shorter ones are not.
        self.topic_check_from = min(config.max_topic_levels, config.max_topic_length // 4 + 1)
        # Connection._on_publish calls its limit checks for topic names at least this long: every
        # PUBLISH under a rate limit, else only those whose name may be over a topic limit.
        self.publish_checks_from = 0 if self.rate_limited else self.topic_check_from
        self.retained_bytes = 0  # topics and payloads of the retained messages
        self._max_retained_bytes = config.max_retained_bytes.bytes
        self._conn_rate = config.max_conn_rate_per_address
        # Source address -> [connections left this second (float), when counted]: a token bucket of
        # one second's worth each; full buckets are pruned every few seconds.
        self._conn_buckets: dict[str, list[float]] = {}
        self._conn_pruned = 0.0

    # -- routing (hot path) -------------------------------------------------

    def route(self, msg: Message) -> int:
        """Deliver ``msg`` to every matching subscription; returns how many copies were handed out."""
        if self._single_copy:
            return self._route_single_copy(msg)
        n = 0
        key: Any
        opts: Any
        for subs in self.trie.match(msg.topic):
            for key, opts in subs.items():
                if type(opts) is SharedGroup:
                    key, opts = opts.pick()
                elif opts.no_local and key.client_id == msg.sender:
                    key.dropped(msg, opts.qos if opts.qos < msg.qos else msg.qos, "no_local")
                    continue
                qos = opts.qos if opts.qos < msg.qos else msg.qos
                key.deliver(msg, qos, msg.retain and opts.rap, opts.sub_id)
                n += 1
        return n

    def _route_single_copy(self, msg: Message) -> int:
        """``overlapping_subscriptions = "single_copy"``: one copy per session, at the highest QoS its
        matching subscriptions grant, with all their Subscription Identifiers [MQTT-3.3.4-4]; retained
        as published if one of them says so. Shared subscriptions are served as usual."""
        n = 0
        merged: dict[Session, list[Any]] = {}
        key: Any
        opts: Any
        for subs in self.trie.match(msg.topic):
            for key, opts in subs.items():
                if type(opts) is SharedGroup:
                    member, member_opts = opts.pick()
                    qos = member_opts.qos if member_opts.qos < msg.qos else msg.qos
                    member.deliver(msg, qos, msg.retain and member_opts.rap, member_opts.sub_id)
                    n += 1
                    continue
                qos = opts.qos if opts.qos < msg.qos else msg.qos
                if opts.no_local and key.client_id == msg.sender:
                    key.dropped(msg, qos, "no_local")
                    continue
                entry = merged.get(key)
                if entry is None:
                    merged[key] = [qos, msg.retain and opts.rap, [] if opts.sub_id is None else [opts.sub_id]]
                    continue
                entry[0] = max(entry[0], qos)
                entry[1] = entry[1] or (msg.retain and opts.rap)
                if opts.sub_id is not None:
                    entry[2].append(opts.sub_id)
        for session, (qos, retain, ids) in merged.items():
            session.deliver(msg, qos, retain, None if not ids else ids[0] if len(ids) == 1 else tuple(ids))
            n += 1
        return n

    def set_retained(self, msg: Message) -> None:
        """Retain ``msg`` for its topic, or clear the topic's (empty payload). Beyond
        ``max_retained_messages`` or ``max_retained_bytes`` the message is not retained (counted; the
        one retained before, if any, stays): the caller routes it all the same."""
        topic = msg.topic
        retained = self.retained
        old: Any = retained.get(topic)
        if not msg.payload:
            if old is not None and retained.delete(topic):  # an empty retained payload clears [MQTT-3.3.1-10]
                self.retained_bytes -= len(topic) + len(old.payload)
                if self.journal is not None:
                    self.journal.retained.add(topic)
            return
        size = len(topic) + len(msg.payload)
        total = self.retained_bytes + size
        if old is None:
            if len(retained) >= self.config.max_retained_messages:
                self.stats.limits["max_retained_messages"] += 1
                return
        else:
            total -= len(topic) + len(old.payload)
        if total > self._max_retained_bytes:
            self.stats.limits["max_retained_bytes"] += 1
            return
        retained.set(topic, msg)
        self.retained_bytes = total
        if self.journal is not None:
            self.journal.retained.add(topic)

    def retained_for(self, topic_filter: str) -> list[Message]:
        """Live retained messages matching a filter; expired ones are removed on the way."""
        now = self.clock.time()
        found: list[Message] = []
        expired = []
        msg: Any
        for msg in self.retained.match_filter(topic_filter):
            if msg.expiry_at is not None and msg.expiry_at <= now:
                expired.append(msg.topic)
            else:
                found.append(msg)
        for topic in expired:
            old: Any = self.retained.get(topic)
            if old is not None and self.retained.delete(topic):
                self.retained_bytes -= len(topic) + len(old.payload)
                if self.journal is not None:
                    self.journal.retained.add(topic)
        return found

    def restore_retained(self, msg: Message) -> None:
        """Start-up (durable_sessions): put back a retained message read from disk, unjournaled.
        Clustered, the cluster's copy (loaded before) is the truth: the disk's is not put back, but
        its topic is journaled so the disk is rewritten from what the cluster holds."""
        if self.cluster is not None:
            if self.journal is not None:
                self.journal.retained.add(msg.topic)
            return
        old: Any = self.retained.get(msg.topic)
        if old is not None:
            self.retained_bytes -= len(msg.topic) + len(old.payload)
        self.retained.set(msg.topic, msg)
        self.retained_bytes += len(msg.topic) + len(msg.payload)

    def apply_retained(self, topic: str, msg: Message | None) -> None:
        """[cluster]: a change of the cluster's retained messages (this node's own included): retain
        ``msg`` for ``topic`` within the local limits, or clear the topic (None). Journaled
        (durable_sessions); not routed, not published again."""
        if msg is not None:
            self.set_retained(msg)
            return
        old: Any = self.retained.get(topic)
        if old is not None and self.retained.delete(topic):
            self.retained_bytes -= len(topic) + len(old.payload)
            if self.journal is not None:
                self.journal.retained.add(topic)

    # -- subscriptions --------------------------------------------------------

    def subscribe(self, session: Session, opts: SubOptions) -> bool:
        """Add or replace one subscription; True if it is new for this session [MQTT-3.8.4-3]."""
        full = opts.topic_filter
        is_new = full not in session.subscriptions
        session.subscriptions[full] = opts
        group_name, real = parse_shared(full)
        if group_name is None:
            self.trie.insert(real, session, opts)
        else:
            group = self.groups.get((group_name, real))
            if group is None:
                group = self.groups[(group_name, real)] = SharedGroup(group_name)
                self.trie.insert(real, group, group)
            group.members = [m for m in group.members if m[0] is not session]
            group.members.append((session, opts))
        if is_new:
            self.subscription_count += 1
            if self.cluster is not None:
                self.cluster.interest_added(full)
        if self.journal is not None:
            self.journal.subscriptions.add(session)
        return is_new

    def unsubscribe(self, session: Session, full: str) -> SubOptions | None:
        """Remove one subscription; returns it, or None if the session had no such filter."""
        opts = session.subscriptions.pop(full, None)
        if opts is None:
            return None
        self.subscription_count -= 1
        if self.journal is not None:
            self.journal.subscriptions.add(session)
        if self.cluster is not None:
            self.cluster.interest_removed(full)
        group_name, real = parse_shared(full)
        if group_name is None:
            self.trie.remove(real, session)
            return opts
        group = self.groups[(group_name, real)]
        group.members = [m for m in group.members if m[0] is not session]
        if not group.members:
            del self.groups[(group_name, real)]
            self.trie.remove(real, group)
        return opts

    # -- sessions -------------------------------------------------------------

    def open_session(self, conn: Connection, client_id: str, clean_start: bool, expiry: int) -> tuple[Session, bool]:
        """Find or create the session for a CONNECT; takes over a live connection [MQTT-3.1.4-3].
        A new session beyond ``max_sessions`` is refused: the connection answers CONNACK 0x97 (3.1.1:
        3) and closes, and ``ProtocolError`` ends the CONNECT's handling (the edge finds the
        connection closed already)."""
        old = self.sessions.get(client_id)
        if old is None and len(self.sessions) >= self.config.max_sessions:
            self.stats.limits["max_sessions"] += 1
            text = f"the broker is at max_sessions ({self.config.max_sessions} sessions)"
            conn.refuse_connect(R.QUOTA_EXCEEDED, text)
            raise ProtocolError(R.QUOTA_EXCEEDED, text)
        if old is not None and old.conn is not None:
            # Closing the old connection may end its session (expiry 0) or fire its will.
            old.conn.taken_over("discarded" if clean_start else "takenover")
            old = self.sessions.get(client_id)
        if old is not None:
            if old.expiry_timer is not None:
                old.expiry_timer.cancel()
                old.expiry_timer = None
            if clean_start:
                self.end_session(old)  # a pending delayed will goes out as the session ends
                old = None
            else:
                self.cancel_will(old)
        present = old is not None
        session = old or Session(self, client_id, expiry)
        session.expiry_interval = expiry
        self.sessions[client_id] = session
        if session.dirty is not None:
            session.dirty.add(session)
        return session, present

    def restore_session(
        self,
        client_id: str,
        expiry_interval: int,
        expires_in: float | None,
        subscriptions: list[SubOptions],
        queue: list[tuple[Message, int, bool, SubIds]],
        first_seq: int,
        inflight: dict[int, tuple[Message, int, bool, SubIds, int]],
        awaiting_rel: list[int],
        will: Will | None = None,
        will_in: float = 0.0,
    ) -> Session:
        """Start-up (durable_sessions): put back an offline session read from disk. Its expiry timer
        runs on this broker's clock: ``expires_in`` seconds (0 or less: at the first turn of the
        loop, firing a pending will as any ending session does; None: never). Queued messages keep
        their order; in-flight ones are resent with DUP (or PUBREL) when the client comes back."""
        session = Session(self, client_id, expiry_interval)
        self.sessions[client_id] = session
        for opts in subscriptions:
            self.subscribe(session, opts)
        if queue:
            session.queue = deque(queue)
        for pid, (msg, qos, retain, sub_id, state) in inflight.items():
            out = session.inflight[pid] = Outgoing(msg, qos, retain, sub_id)
            out.state = state
        if inflight:
            top = max(inflight)
            session.next_pid = top + 1 if top < 65535 else 1
        if awaiting_rel:
            session.awaiting_rel = set(awaiting_rel)
        session.q_tail = first_seq + len(queue)
        if will is not None:
            if self.owners is not None:  # clustered: scheduled once the cluster says the session is ours
                self.owners.restored(session, will, will_in)
            else:
                session.will = will
                session.will_at = self.clock.time() + will_in
                session.will_timer = self.clock.call_later(max(will_in, 0.0), self.fire_will, session)
        if expires_in is not None:
            expires_in = max(expires_in, 0.0)
            session.expiry_at = self.clock.time() + expires_in
            session.expiry_timer = self.clock.call_later(expires_in, self._expire, session)
        if self.journal is not None:
            self.journal.adopt(session, first_seq)
        return session

    def detach(self, session: Session, conn: Connection) -> None:
        """A connection ended: keep the session for its expiry interval, or end it now."""
        if session.conn is not conn:
            return  # already taken over by a newer connection
        session.conn = None
        session.release_publishers()  # an offline subscriber's queue takes what comes; nobody waits for it
        if session.dirty is not None:
            session.dirty.add(session)
        if session.expiry_interval == 0:
            self.end_session(session)
        elif session.expiry_interval != NEVER_EXPIRES:
            session.expiry_at = self.clock.time() + session.expiry_interval
            session.expiry_timer = self.clock.call_later(session.expiry_interval, self._expire, session)
        if self.owners is not None:
            self.owners.changed(session.client_id)

    def _expire(self, session: Session) -> None:
        session.expiry_timer = None
        if session.conn is None and self.sessions.get(session.client_id) is session:
            self.end_session(session)

    def end_session(self, session: Session) -> None:
        """Drop all state of a session; a delayed will is published now [MQTT-3.1.3-9]."""
        if session.dirty is not None:
            session.dirty.add(session)
        for full in list(session.subscriptions):
            self.unsubscribe(session, full)
        session.clear_flows()
        if session.will is not None:
            self.fire_will(session)
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
            if self.owners is not None:
                self.owners.changed(session.client_id)

    def drop_session(self, session: Session) -> None:
        """[cluster]: forget a session this node no longer owns (handed to another node, or found owned
        elsewhere): its state goes, its pending will is not published (the new owner's CONNECT
        cancelled it [MQTT-3.1.3-9], or another node published it). Close its connection first."""
        if session.expiry_timer is not None:
            session.expiry_timer.cancel()
            session.expiry_timer = None
        self.cancel_will(session)
        self.end_session(session)

    # -- wills ----------------------------------------------------------------

    def schedule_will(self, session: Session, will: Will, delay: float) -> None:
        session.will = will
        session.will_at = self.clock.time() + delay
        if session.dirty is not None:
            session.dirty.add(session)
        if delay <= 0:
            self.fire_will(session)
        else:
            session.will_timer = self.clock.call_later(delay, self.fire_will, session)

    def cancel_will(self, session: Session) -> None:
        """A reconnect within the Will Delay Interval cancels the will [MQTT-3.1.3-9]."""
        if session.will_timer is not None:
            session.will_timer.cancel()
            session.will_timer = None
        if session.will is not None and session.dirty is not None:
            session.dirty.add(session)
        session.will = None

    def fire_will(self, session: Session) -> None:
        will = session.will
        if session.will_timer is not None:
            session.will_timer.cancel()
            session.will_timer = None
        session.will = None
        if will is None:
            return
        if session.dirty is not None:
            session.dirty.add(session)
        props = {k: v for k, v in will.properties.items() if k != "Will-Delay-Interval"}
        expiry = props.get("Message-Expiry-Interval")
        expiry_at = self.clock.time() + expiry if expiry is not None else None
        conn = session.conn
        username = conn.username if conn is not None else None
        msg = Message(will.topic, will.payload, will.qos, will.retain, props, session.client_id, expiry_at, username)
        self.publish(msg)
        if self.owners is not None:
            self.owners.changed(session.client_id)

    def publish(self, msg: Message) -> int:
        """Retain if asked, then route; counts (and reports) a message nobody received."""
        fire = self.hooks.message_publish
        if fire is not None:
            fire(msg)
        if msg.retain:
            self.set_retained(msg)
        cluster = self.cluster
        if cluster is not None:
            # Other nodes' subscribers, and every shared group (members anywhere, this node's
            # included), are served through the cluster; whether any exist is not known here, so
            # no_subscribers is not reported.
            cluster.published(msg)
            return self._route_unshared(msg, None)
        n = self.route(msg)
        if n == 0:
            self.message_dropped(msg, "no_subscribers")
        return n

    def _route_unshared(self, msg: Message, only: str | None) -> int:
        """Clustered routing of the local trie's non-shared subscriptions; with ``only``, those whose
        filter is ``only`` (a message from another node comes once per filter that wanted it).
        Each matching subscription gets its copy (``overlapping_subscriptions = "copy_each"``)."""
        n = 0
        key: Any
        opts: Any
        for subs in self.trie.match(msg.topic):
            for key, opts in subs.items():
                if type(opts) is SharedGroup or (only is not None and opts.topic_filter != only):
                    continue
                qos = opts.qos if opts.qos < msg.qos else msg.qos
                if opts.no_local and key.client_id == msg.sender:
                    key.dropped(msg, qos, "no_local")
                    continue
                key.deliver(msg, qos, msg.retain and opts.rap, opts.sub_id)
                n += 1
        return n

    def route_remote(self, msg: Message, topic_filter: str) -> int:
        """A message the cluster brings for one of this node's filters (``$share/...`` for a shared
        group's turn, which may be a message published here): deliver it to the local subscribers of
        that filter, without publishing it again. Returns how many copies were handed out."""
        group_name, real = parse_shared(topic_filter)
        if group_name is None:
            return self._route_unshared(msg, topic_filter)
        group = self.groups.get((group_name, real))
        if group is None:
            return 0  # the group left while the message was on its way
        member, opts = group.pick()
        member.deliver(msg, opts.qos if opts.qos < msg.qos else msg.qos, msg.retain and opts.rap, opts.sub_id)
        return 1

    def message_dropped(self, msg: Message, reason: str) -> None:
        self.stats.messages_dropped[reason] += 1
        fire = self.hooks.message_dropped
        if fire is not None:
            fire(msg, reason)

    # -- connections per address ------------------------------------------------

    def admit_connection(self, host: str) -> bool:
        """A new connection from ``host``: False if that address is over ``max_conn_rate_per_address``
        (counted). Each address has a token bucket of one second's worth, refilled continuously."""
        rate = self._conn_rate
        if not rate or host == "undefined":
            return True
        now = self.clock.time()
        buckets = self._conn_buckets
        if now - self._conn_pruned >= 5.0:  # forget addresses whose bucket is full again
            self._conn_pruned = now
            for addr in [a for a, (left, at) in buckets.items() if left + (now - at) * rate >= rate]:
                del buckets[addr]
        bucket = buckets.get(host)
        if bucket is None:
            buckets[host] = [rate - 1.0, now]
            return True
        left = bucket[0] + (now - bucket[1]) * rate
        if left > rate:
            left = rate
        bucket[1] = now
        if left < 1.0:
            bucket[0] = left
            self.stats.limits["max_conn_rate_per_address"] += 1
            return False
        bucket[0] = left - 1.0
        return True

    # -- gauges ---------------------------------------------------------------

    def gauges(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "sessions": len(self.sessions),
            "subscriptions": self.subscription_count,
            "retained": len(self.retained),
            "retained_bytes": self.retained_bytes,
            "sockets": self.sockets,
            "max_connections": self.max_connections,
            "paused_backpressure": self.flow_gauges["backpressure"],
            "paused_write_buffer_full": self.flow_gauges["write_buffer_full"],
            "paused_rate_limit": self.flow_gauges["rate_limit"],
            "subscribers_behind": self.flow_gauges["subscribers_behind"],
            # durable_sessions: sessions and retained topics changed and not yet written (0 when off)
            "durable_unflushed": self.journal.unflushed if self.journal is not None else 0,
        }

    def kick(self, client_id: str) -> bool:
        """End a client's connection (DISCONNECT 0x98 to v5, ``client.disconnected`` reason
        ``kicked``) and its session, as EMQX's kick does; False if there is no such session."""
        session = self.sessions.get(client_id)
        if session is None:
            return False
        if session.conn is not None:
            session.conn.kick()
        if self.sessions.get(client_id) is session:  # a session with an expiry outlives its connection
            if session.expiry_timer is not None:
                session.expiry_timer.cancel()
                session.expiry_timer = None
            self.end_session(session)
        return True

    def shutdown(self) -> None:
        """Close every connection with 0x8B (server shutting down)."""
        for conn in list(self.connections):
            conn.shut_down()
