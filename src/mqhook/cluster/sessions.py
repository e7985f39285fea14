"""Session ownership across nodes: one owner per client id, takeover, fencing, and dead nodes' wills.

**Ownership.** The JetStream KV bucket ``mqhook_sessions`` (history 1) holds one key per client id
that has a session somewhere: ``c.`` + the id escaped as one subject token (``subjects.encode_level``:
bytes outside ``[A-Za-z0-9_-]`` as ``=XX``), or ``h.`` + a SHA-256 for an id too long for a key. Its
value is msgpack ``[client_id, node, incarnation, will]``: the owning node, its incarnation (a random
id per process start) and the client's will while it may still fire (``None`` otherwise). The key's
revision is the fence: every write is a compare-and-set on the revision the writer last saw.

**Claim (per CONNECT).** ``OwnerAuthenticator`` wraps the broker's authenticator. Once that says
SUCCESS, the claim runs as a task and the connection holds what its client sends meanwhile:

- the key is owned by another node incarnation: request ``mqhook.ctl.<node>.takeover``; the owner
  closes its connection (v5 DISCONNECT 0x8E, ``client.disconnected`` reason ``takenover``, or
  ``discarded`` for a clean start), and for a CONNECT without clean start returns the session's
  state (subscriptions, queued and in-flight messages, PUBREL state, expiry) and forgets it without
  its will (the reconnect cancels a delayed will [MQTT-3.1.3-9]); with clean start it ends the
  session there, publishing a pending will as one broker would. No responder or no answer within
  ``TAKEOVER_TIMEOUT``: the owner is dead or cut off, the key is taken anyway (session present 0);
- then the key is written by CAS (``create`` when absent), the state imported with
  ``Broker.restore_session``, and the CONNECT goes on (CONNACK session present 1 if imported).
  A CAS conflict (a racing CONNECT elsewhere) re-reads, at most ``MAX_CLAIM_TRIES`` times, then
  refuses CONNACK 0x89 server busy; NATS or JetStream unreachable refuses 0x88 server unavailable
  (3.1.1: 3 for both) rather than risk two owners. A reconnect to the node that owns the id costs
  one KV write.

**Fence.** Every node watches the bucket and mirrors it (key -> client id, incarnation, revision,
value). An update or delete of a key this node owns, at a revision past the one it wrote, means
someone else took it: the local connection is closed (reason ``takenover``) and the session dropped
without its will. A local write that fails its CAS means the same. While its NATS link is down a
node keeps its clients (availability); it converges when its watcher catches up.

**Keeping the record.** The broker tells ``changed(client_id)`` when a connection leaves or a session
ends or a delayed will goes out (per connect/disconnect, never per message); a task then deletes the
key by CAS (session gone) or rewrites its will (the will fired, was discarded or is now the
session's). So a will cancelled or published here is not in the KV any more.

**Dead nodes and their wills (the choice: at once).** Each incarnation puts ``n.<incarnation>`` in
``mqhook_nodes`` every ``HEARTBEAT``; one not refreshed for ``[cluster] node_timeout`` is dead, and
one whose key is deleted (a clean stop without ``durable_sessions``) is dead at once. A silent one
is asked on core NATS first (``mqhook.ctl.<node>.alive``): heartbeats go through JetStream, which
stalls for seconds while it elects a new leader after losing a server, and a node that answers
with its incarnation is alive. The survivors
CAS-delete each key the dead incarnation owned; the one whose delete succeeds publishes the stored
will through ``Broker.publish`` (local and remote subscribers, webhooks) **at once**: the Will
Delay Interval of a dead node's clients is not waited out, nor their session expiry (the sessions
died with the node). A node judges others only after its own heartbeat has come back to it for
``node_timeout`` without a gap, so a node that was frozen or cut off does not declare the others
dead when it wakes. A will fired locally is removed from the KV by a write that may not land
before a crash: in that window a dead node's will can be published twice.

**Restart under the same name with durable_sessions.** Restored sessions are adopted: a key still
owned by this node's name (an older incarnation) is taken over by CAS and the restored delayed will
scheduled; a key that is gone (survivors published the will) or owned elsewhere drops the restored
session without its will. Until then the restored wills are held (``Broker.restore_session`` hands
them to ``restored``), so a will survivors published is not published again.

Counters (plain ints): see ``SessionOwners.counters``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError

from mqhook.broker.auth import Authenticator, Authn
from mqhook.broker.connection import AWAIT_CONNECT
from mqhook.cluster.records import (
    alive_subject,
    client_key,
    control_subject,
    encode_will,
    export_session,
    imported_session,
    key_client,
    will_message,
)
from mqhook.mqtt import reason as R
from mqhook.mqtt.packets import Will

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.kv import KeyValue

    from mqhook.broker.connection import Connection
    from mqhook.broker.session import Session
    from mqhook.cluster.bridge import ClusterBridge

log = logging.getLogger("mqhook.cluster.sessions")

BUCKET = "mqhook_sessions"
NODES_BUCKET = "mqhook_nodes"
HEARTBEAT = 1.0  # seconds between two heartbeats of a node
MIN_NODE_TIMEOUT = 2.0
TAKEOVER_TIMEOUT = 0.5  # seconds a claimer waits for the old owner to hand the session over
KV_TIMEOUT = 2.0  # seconds for one KV operation before NATS counts as unreachable
MAX_CLAIM_TRIES = 5
NODES_TTL = 300.0  # seconds the node bucket keeps a heartbeat (the same for every node: one bucket config)
CLOSE_WAIT = 2.0  # seconds a stopping node waits for its last record updates
_WRONG_LAST = (10071, 10164)  # JetStream: wrong last sequence (a failed CAS)
_DEL_OPS = ("DEL", "PURGE")
KV_OP = "KV-Operation"  # a KV entry's header: DEL or PURGE (absent: a value)
KV_MARKER = "Nats-Marker-Reason"  # nats-server 2.11+: a marker the server placed (max age, purge, remove)
PURGE = "PURGE"
WATCH_HEARTBEAT = 1.0  # seconds between the buckets' consumer heartbeats


class Entry(NamedTuple):
    """One KV entry as the watchers hand it on."""

    key: str
    value: bytes
    revision: int
    operation: str | None


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


class Refused(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


def _wrong_last(exc: BaseException) -> bool:
    return isinstance(exc, KeyWrongLastSequenceError) or (isinstance(exc, APIError) and exc.err_code in _WRONG_LAST)


class OwnerAuthenticator(Authenticator):
    """The broker's authenticator, then the claim of the client id (a CONNECT the inner one accepts
    waits for it)."""

    def __init__(self, inner: Authenticator, owners: SessionOwners) -> None:
        self.inner = inner
        self.owners = owners

    def authenticate(self, conn: Connection, password: bytes | None, done: Callable[[Authn], None]) -> Authn | None:
        owners = self.owners

        def decided(authn: Authn) -> None:
            if authn.code != R.SUCCESS:
                done(authn)
            else:
                owners.claim(conn, authn, done)

        authn = self.inner.authenticate(conn, password, decided)
        if authn is None or authn.code != R.SUCCESS:
            return authn
        owners.claim(conn, authn, done)
        return None


class SessionOwners:
    """The ``ClusterPart`` of session ownership (see the module docstring)."""

    name = "sessions"

    def __init__(self, bridge: ClusterBridge, node_timeout: float = 3.0) -> None:
        self.bridge = bridge
        self.broker = bridge.broker
        self.node = bridge.node
        self.node_timeout = node_timeout
        self.incarnation = secrets.token_hex(8)
        self.counters = {
            "claims": 0,
            "takeovers_requested": 0,
            "takeovers_served": 0,
            "takeovers_stale": 0,
            "takeover_no_answer": 0,
            "sessions_transferred": 0,
            "claim_conflicts": 0,
            "refused_busy": 0,
            "refused_unavailable": 0,
            "fenced": 0,
            "stale_deletes": 0,
            "stale_writes": 0,
            "will_writes": 0,
            "dead_nodes": 0,
            "silent_but_alive": 0,
            "wills_of_dead_nodes": 0,
            "adopted": 0,
            "orphans_dropped": 0,
            "errors": 0,
        }
        self.kv: KeyValue | None = None
        self.nodes: KeyValue | None = None
        self.owned: dict[str, int] = {}  # client id -> revision of the key this node wrote last
        self.written: dict[str, bytes | None] = {}  # client id -> the will blob in that write
        # The bucket's mirror: key -> (client id, incarnation, revision, value); keys by incarnation.
        self.mirror: dict[str, tuple[str, str, int, bytes]] = {}
        self.by_inc: dict[str, set[str]] = {}
        self.last_seen: dict[str, float] = {}  # incarnation -> when its heartbeat came (loop clock)
        self.first_seen: dict[str, float] = {}  # incarnation -> when a key of it was first seen
        self.node_of: dict[str, str] = {}  # incarnation -> node name
        self.gone: set[str] = set()  # incarnations whose node key was deleted (stopped, or reaped)
        self.reaped: set[str] = set()
        self._fresh_since: float | None = None  # since when our own heartbeat comes back without gap
        self._held_wills: dict[str, tuple[Will, float]] = {}  # restored wills awaiting adoption
        self._locks: dict[str, list[Any]] = {}  # client id -> [Lock, users]
        self._pending: set[str] = set()  # client ids with a record update queued
        self._retry: set[str] = set()  # record updates NATS did not take; retried each heartbeat
        self._tasks: set[asyncio.Task[Any]] = set()
        self._work: set[asyncio.Task[Any]] = set()  # claims and record updates (waited for on close)
        self._watchers: list[Any] = []
        self._ctl: Any = None
        self._alive: Any = None
        self._synced = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._inner_auth: Authenticator | None = None

    # -- life -------------------------------------------------------------------------------------

    async def start(self) -> None:
        bridge = self.bridge
        self.node_timeout = max(self.node_timeout, MIN_NODE_TIMEOUT)
        self.kv = await bridge.bucket(BUCKET, history=1)
        self.nodes = await bridge.bucket(NODES_BUCKET, history=1, ttl=NODES_TTL)
        loop = asyncio.get_running_loop()
        synced = [asyncio.Event(), asyncio.Event()]
        self._watchers = [
            await self._watch(BUCKET, self._on_session_entry, synced[0]),
            await self._watch(NODES_BUCKET, self._on_node_entry, synced[1]),
        ]
        await self._heartbeat()
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in synced)), 15.0)
        assert bridge.nc is not None
        self._ctl = await bridge.nc.subscribe(control_subject(self.node), cb=self._on_takeover)
        self._alive = await bridge.nc.subscribe(alive_subject(self.node), cb=self._on_alive)
        self._fresh_since = None
        self._inner_auth = self.broker.authenticator
        self.broker.authenticator = OwnerAuthenticator(self.broker.authenticator, self)
        self.broker.owners = self
        self._loop_task = loop.create_task(self._run(), name="mqhook-cluster-sessions")

    async def close(self) -> None:
        # The connections closed by the broker's shutdown queued their record updates: bounded wait.
        if self._work:
            await asyncio.wait(list(self._work), timeout=CLOSE_WAIT)
        self.broker.owners = None
        if self._inner_auth is not None:
            self.broker.authenticator = self._inner_auth
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for sub in (self._ctl, self._alive):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        # Without durable_sessions nothing of this node outlives it: its node key goes, so the others
        # reap its records (and publish the delayed wills of its offline sessions) at once.
        if self.broker.journal is None and self.nodes is not None and self._connected():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nodes.delete("n." + self.incarnation), KV_TIMEOUT)
        for watcher in self._watchers:
            with contextlib.suppress(Exception):
                await watcher.unsubscribe()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any, work: bool = False) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        if work:
            self._work.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._work.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.counters["errors"] += 1
            log.error("cluster sessions: task failed", exc_info=task.exception())

    def _connected(self) -> bool:
        qc = self.bridge.qc
        return qc is not None and qc.is_connected

    @contextlib.asynccontextmanager
    async def _locked(self, client_id: str) -> Any:
        """One claim or record update of a client id at a time on this node."""
        entry = self._locks.get(client_id)
        if entry is None:
            entry = self._locks[client_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._locks[client_id]

    # -- the broker's side (synchronous) -------------------------------------------------------------

    def changed(self, client_id: str) -> None:
        """A session's record may need an update (``Broker.owners``)."""
        if client_id in self._pending or client_id not in self.owned:
            return
        self._pending.add(client_id)
        self._spawn(self._reconcile_task(client_id), work=True)

    def restored(self, session: Session, will: Will, will_in: float) -> None:
        """A durable session came back with a delayed will: held until the cluster says it is ours."""
        self._held_wills[session.client_id] = (will, self.broker.clock.time() + will_in)

    def claim(self, conn: Connection, authn: Authn, done: Callable[[Authn], None]) -> None:
        self._spawn(self._claim(conn, authn, done), work=True)

    # -- claim ----------------------------------------------------------------------------------------

    async def _claim(self, conn: Connection, authn: Authn, done: Callable[[Authn], None]) -> None:
        client_id = conn.client_id
        self.counters["claims"] += 1
        try:
            async with self._locked(client_id):
                if conn.state != AWAIT_CONNECT:
                    return
                try:
                    state = await self._take(client_id, conn.clean_start)
                except Refused as exc:
                    if conn.state == AWAIT_CONNECT:
                        conn.refuse_connect(exc.code, str(exc))
                    return
                if state is not None:
                    self._import(client_id, state)
                if conn.state == AWAIT_CONNECT:
                    done(authn)
        finally:
            self.changed(client_id)  # its will, or (refused, closed meanwhile) the record goes

    async def _take(self, client_id: str, clean_start: bool) -> list[Any] | None:
        """Make this node the owner of ``client_id``'s key; the session state handed over, if any."""
        if not self._connected():
            self.counters["refused_unavailable"] += 1
            raise Refused(R.SERVER_UNAVAILABLE, "the cluster's session store is unreachable")
        kv = self.kv
        assert kv is not None
        key = client_key(client_id)
        value = _encode([client_id, self.node, self.incarnation, None])
        state: list[Any] | None = None
        asked = -1  # the revision the owner was last asked about
        fresh = False  # read the key from JetStream (after a failed CAS) rather than the mirror
        try:
            for _ in range(MAX_CLAIM_TRIES):
                owner_inc: str | None = None
                rev = 0
                if fresh:
                    try:
                        entry = await asyncio.wait_for(kv.get(key), KV_TIMEOUT)
                    except KeyNotFoundError:
                        pass
                    else:
                        assert entry.value is not None and entry.revision is not None
                        owner_inc, rev = _decode(entry.value)[2], entry.revision
                elif client_id in self.owned:  # ours: what this node wrote is newer than its mirror
                    owner_inc, rev = self.incarnation, self.owned[client_id]
                else:
                    seen = self.mirror.get(key)
                    if seen is not None:
                        owner_inc, rev = seen[1], seen[2]
                if owner_inc is not None and owner_inc != self.incarnation and asked != rev:
                    stale = self.broker.sessions.get(client_id)
                    if stale is not None:  # a session this node had before someone else took it
                        self._fence(client_id)
                    if owner_inc not in self.reaped:
                        asked = rev
                        state = await self._ask(owner_inc, rev, client_id, clean_start) or state
                try:
                    if owner_inc is None:
                        new_rev = await asyncio.wait_for(kv.create(key, value), KV_TIMEOUT)
                    else:
                        new_rev = await asyncio.wait_for(kv.update(key, value, last=rev), KV_TIMEOUT)
                except (KeyWrongLastSequenceError, APIError) as exc:
                    if not _wrong_last(exc):
                        raise
                    self.counters["claim_conflicts"] += 1
                    fresh = True
                    continue
                self.owned[client_id] = new_rev
                self.written[client_id] = None
                return state
        except (TimeoutError, NatsError, ConnectionError) as exc:
            self.counters["refused_unavailable"] += 1
            raise Refused(R.SERVER_UNAVAILABLE, f"the cluster's session store is unreachable: {exc!r}") from exc
        self.counters["refused_busy"] += 1
        raise Refused(R.SERVER_BUSY, "the client id is being claimed on other nodes at once; try again")

    async def _ask(self, owner_inc: str, rev: int, client_id: str, clean_start: bool) -> list[Any] | None:
        """Ask the owner to let go (and hand over the session's state)."""
        node = self.node_of.get(owner_inc)
        if node is None:
            node = self._node_in_mirror(client_id)
        if node is None or node == self.node:  # an older incarnation of this node: gone
            return None
        nc = self.bridge.nc
        assert nc is not None
        self.counters["takeovers_requested"] += 1
        body = _encode([client_id, clean_start, self.node, rev])
        try:
            reply = await nc.request(control_subject(node), body, timeout=TAKEOVER_TIMEOUT)
        except (NoRespondersError, NatsTimeoutError, TimeoutError):
            self.counters["takeover_no_answer"] += 1
            return None
        state = _decode(reply.data)
        return state if isinstance(state, list) else None

    def _node_in_mirror(self, client_id: str) -> str | None:
        seen = self.mirror.get(client_key(client_id))
        if seen is None:
            return None
        node = _decode(seen[3])[1]
        return node if isinstance(node, str) else None

    def _import(self, client_id: str, state: list[Any]) -> None:
        broker = self.broker
        old = broker.sessions.get(client_id)
        if old is not None:
            self._drop_local(client_id, old)
        broker.restore_session(client_id, *imported_session(state, broker.clock.time()))
        self.counters["sessions_transferred"] += 1

    # -- the owner's side of a takeover -------------------------------------------------------------

    async def _on_takeover(self, m: Msg) -> None:
        try:
            client_id, clean_start, by, rev = _decode(m.data)
        except (msgspec.DecodeError, ValueError, TypeError):
            self.counters["errors"] += 1
            return
        mine = self.owned.get(client_id)
        if mine is not None and mine != rev:
            # Asked about a record this node has rewritten since (or a request that waited while this
            # node was frozen, after which the client came back here): not handed over; the
            # claimer's CAS fails and it asks again about the current record.
            self.counters["takeovers_stale"] += 1
            state = None
        else:
            self.counters["takeovers_served"] += 1
            state = self.hand_over(client_id, bool(clean_start))
        log.debug("cluster: node %s takes over client %r", by, client_id)
        with contextlib.suppress(Exception):
            await m.respond(_encode(state))

    def hand_over(self, client_id: str, clean_start: bool) -> list[Any] | None:
        """Let go of ``client_id``: close its connection here; its state when the new CONNECT keeps
        the session, else None (a clean start ends it here, publishing a pending will)."""
        self.owned.pop(client_id, None)
        self.written.pop(client_id, None)
        self._held_wills.pop(client_id, None)
        broker = self.broker
        session = broker.sessions.get(client_id)
        if session is None:
            return None
        if session.conn is not None:
            session.conn.taken_over("discarded" if clean_start else "takenover")
        session = broker.sessions.get(client_id)  # ended with its connection if its expiry was 0
        if session is None:
            return None
        if clean_start:
            if session.expiry_timer is not None:
                session.expiry_timer.cancel()
                session.expiry_timer = None
            broker.end_session(session)
            return None
        state = export_session(session, broker.clock.time())
        broker.drop_session(session)
        return state

    # -- fence -------------------------------------------------------------------------------------

    def _fence(self, client_id: str) -> None:
        """Another node owns ``client_id`` now: close and forget it here, without its will."""
        self.owned.pop(client_id, None)
        self.written.pop(client_id, None)
        self._held_wills.pop(client_id, None)
        session = self.broker.sessions.get(client_id)
        if session is not None:
            self.counters["fenced"] += 1
            log.info("cluster: client %r is owned by another node now; dropped here", client_id)
            self._drop_local(client_id, session)

    def _drop_local(self, client_id: str, session: Session) -> None:
        broker = self.broker
        if session.conn is not None:
            session.will = None
            session.conn.will = None  # the other node's record holds the will now, if any
            session.conn.taken_over("takenover")
        session = broker.sessions.get(client_id)  # type: ignore[assignment]
        if session is not None:
            broker.drop_session(session)

    # -- watching the buckets ------------------------------------------------------------------------

    async def _watch(self, bucket: str, handler: Callable[[Entry], None], synced: asyncio.Event) -> Any:
        """Every entry of ``bucket`` (the last of each key first, then each change) to ``handler``;
        ``synced`` once the last key present at the start has come. An ordered consumer, as
        nats-py's ``KeyValue.watchall`` makes, but with ``WATCH_HEARTBEAT``: after JetStream was
        out of reach, nats-py makes it again once two heartbeats are missed (watchall's 5 s would
        leave a stale owner's clients up to 10 s longer)."""
        js = self.bridge.js
        assert js is not None
        prefix = f"$KV.{bucket}."

        async def on_entry(m: Msg) -> None:
            meta = m.metadata
            headers = m.headers or {}
            op = headers.get(KV_OP) or (PURGE if KV_MARKER in headers else None)
            try:
                handler(Entry(m.subject[len(prefix) :], m.data, meta.sequence.stream, op))
            except Exception:
                self.counters["errors"] += 1
                log.exception("cluster sessions: bad entry %r", m.subject)
            if meta.num_pending == 0:
                synced.set()

        sub = await js.subscribe(
            prefix + ">",
            stream=f"KV_{bucket}",
            cb=on_entry,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            idle_heartbeat=WATCH_HEARTBEAT,
        )
        info = await sub.consumer_info()
        if info.num_pending == 0 and (info.delivered is None or not info.delivered.consumer_seq):
            synced.set()  # an empty bucket
        return sub

    def _on_session_entry(self, entry: Entry) -> None:
        key = entry.key
        rev = entry.revision
        old = self.mirror.pop(key, None)
        if old is not None:
            keys = self.by_inc.get(old[1])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_inc[old[1]]
        if entry.operation in _DEL_OPS or not entry.value:
            client_id = old[0] if old is not None else key_client(key)
            if client_id is not None:
                self._check_fence(client_id, rev)
            return
        client_id, node, inc = _decode(entry.value)[:3]
        self.mirror[key] = (client_id, inc, rev, entry.value)
        self.by_inc.setdefault(inc, set()).add(key)
        self.node_of.setdefault(inc, node)
        if inc not in self.first_seen:
            self.first_seen[inc] = asyncio.get_running_loop().time()
        if inc != self.incarnation:
            self._check_fence(client_id, rev)

    def _check_fence(self, client_id: str, rev: int) -> None:
        mine = self.owned.get(client_id)
        if mine is not None and rev > mine:
            self._fence(client_id)

    def _on_node_entry(self, entry: Entry) -> None:
        inc = entry.key[2:]
        if entry.operation in _DEL_OPS or not entry.value:
            if inc != self.incarnation:
                self.gone.add(inc)
            self.last_seen.pop(inc, None)
            return
        node = _decode(entry.value)[0]
        self.node_of[inc] = node
        self.last_seen[inc] = asyncio.get_running_loop().time()
        self.gone.discard(inc)
        self.reaped.discard(inc)

    # -- the record of local sessions -------------------------------------------------------------

    async def _reconcile_task(self, client_id: str) -> None:
        async with self._locked(client_id):
            self._pending.discard(client_id)
            await self._reconcile(client_id)

    def _will_blob(self, session: Session) -> bytes | None:
        conn = session.conn
        if conn is not None:
            return None if conn.will is None else encode_will(conn.will, conn.username)
        return None if session.will is None else encode_will(session.will, session.client_info[0])

    async def _reconcile(self, client_id: str) -> None:
        rev = self.owned.get(client_id)
        if rev is None:
            return
        kv = self.kv
        assert kv is not None
        key = client_key(client_id)
        session = self.broker.sessions.get(client_id)
        try:
            if session is None:
                del self.owned[client_id]
                self.written.pop(client_id, None)
                self._held_wills.pop(client_id, None)
                try:
                    await asyncio.wait_for(kv.delete(key, last=rev), KV_TIMEOUT)
                except (KeyWrongLastSequenceError, APIError) as exc:
                    if not _wrong_last(exc):
                        raise
                    self.counters["stale_deletes"] += 1
                return
            blob = self._will_blob(session)
            if client_id in self.written and self.written[client_id] == blob:
                return
            value = _encode([client_id, self.node, self.incarnation, blob])
            try:
                new_rev = await asyncio.wait_for(kv.update(key, value, last=rev), KV_TIMEOUT)
            except (KeyWrongLastSequenceError, APIError) as exc:
                if not _wrong_last(exc):
                    raise
                self.counters["stale_writes"] += 1
                if self.owned.get(client_id) == rev:
                    self._fence(client_id)
                return
            if self.owned.get(client_id) == rev:
                self.owned[client_id] = new_rev
                self.written[client_id] = blob
                self.counters["will_writes"] += 1
        except (TimeoutError, NatsError, ConnectionError):
            # NATS did not take it: retried on the next heartbeat (the record keeps this node as owner)
            if session is None:
                self.owned.setdefault(client_id, rev)
            self._retry.add(client_id)

    # -- heartbeat, adoption, dead nodes ---------------------------------------------------------------

    async def _heartbeat(self) -> None:
        assert self.nodes is not None
        if not self._connected():
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.nodes.put("n." + self.incarnation, _encode([self.node, self.incarnation])), KV_TIMEOUT
            )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._heartbeat()
                if self._retry:
                    retry, self._retry = self._retry, set()
                    for client_id in retry:
                        self.changed(client_id)
                await self._adopt_orphans()
                await self._reap_dead()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters["errors"] += 1
                log.exception("cluster sessions: heartbeat round failed")
            await asyncio.sleep(max(0.05, HEARTBEAT - (loop.time() - started)))

    async def _adopt_orphans(self) -> None:
        """Local sessions this node does not own on record (restored from disk): adopt or drop."""
        broker = self.broker
        if len(broker.sessions) <= len(self.owned) or not self._connected():
            return
        kv = self.kv
        assert kv is not None
        for client_id in [c for c in broker.sessions if c not in self.owned and c not in self._locks]:
            async with self._locked(client_id):
                session = broker.sessions.get(client_id)
                if session is None or client_id in self.owned:
                    continue
                key = client_key(client_id)
                try:
                    entry = await asyncio.wait_for(kv.get(key), KV_TIMEOUT)
                except KeyNotFoundError:
                    entry = None
                except (TimeoutError, NatsError, ConnectionError):
                    return  # next round
                node = None if entry is None or entry.value is None else _decode(entry.value)[1]
                held = self._held_wills.pop(client_id, None)
                if entry is None or node != self.node:
                    self.counters["orphans_dropped"] += 1
                    self._drop_local(client_id, session)
                    continue
                value = _encode([client_id, self.node, self.incarnation, None])
                try:
                    assert entry.revision is not None
                    self.owned[client_id] = await asyncio.wait_for(
                        kv.update(key, value, last=entry.revision), KV_TIMEOUT
                    )
                except Exception:
                    if held is not None:
                        self._held_wills[client_id] = held
                    return
                self.written[client_id] = None
                self.counters["adopted"] += 1
                if held is not None and session.conn is None:
                    will, will_at = held
                    broker.schedule_will(session, will, max(0.0, will_at - broker.clock.time()))
            self.changed(client_id)

    async def _reap_dead(self) -> None:
        """Incarnations gone silent: delete their records by CAS, publish the wills of those won."""
        now = asyncio.get_running_loop().time()
        own = self.last_seen.get(self.incarnation)
        if own is None or now - own > self.node_timeout or not self._connected():
            self._fresh_since = None
            return
        if self._fresh_since is None:
            self._fresh_since = now
        watching = now - self._fresh_since  # how long this node has seen the cluster without a gap
        timeout = self.node_timeout
        for inc in list(self.by_inc):
            if inc == self.incarnation or inc in self.reaped:
                continue
            if inc not in self.gone:
                seen = self.last_seen.get(inc, self.first_seen.get(inc, now))
                if now - seen <= timeout or watching <= timeout:
                    continue
            if await self._answers(inc):  # silent in the KV, alive on core NATS (JetStream electing)
                self.last_seen[inc] = now
                self.counters["silent_but_alive"] += 1
                continue
            self.reaped.add(inc)
            log.warning(
                "cluster: node %s (incarnation %s) is gone; taking back its sessions", self.node_of.get(inc), inc
            )
            await self._reap(inc)
            if inc in self.reaped:  # not put back for another round by JetStream trouble
                self.counters["dead_nodes"] += 1

    async def _answers(self, inc: str) -> bool:
        """Does incarnation ``inc`` answer on core NATS? Its heartbeats go through JetStream, which
        stalls for seconds while it elects a new leader (a nats-server of the cluster died): a node
        whose heartbeats are late but which answers is alive. No answer (frozen, cut off, or its node
        name now runs another incarnation): dead."""
        node = self.node_of.get(inc)
        nc = self.bridge.nc
        if node is None or nc is None or node == self.node:
            return False
        try:
            reply = await nc.request(alive_subject(node), b"", timeout=TAKEOVER_TIMEOUT)
        except (NoRespondersError, NatsTimeoutError, TimeoutError):
            return False
        return bool(reply.data == inc.encode())

    async def _on_alive(self, m: Msg) -> None:
        with contextlib.suppress(Exception):
            await m.respond(self.incarnation.encode())

    async def _reap(self, inc: str) -> None:
        kv = self.kv
        assert kv is not None and self.nodes is not None
        for key in list(self.by_inc.get(inc, ())):
            seen = self.mirror.get(key)
            if seen is None or seen[1] != inc:
                continue
            client_id, _inc, rev, value = seen
            try:
                await asyncio.wait_for(kv.delete(key, last=rev), KV_TIMEOUT)
            except (KeyWrongLastSequenceError, APIError) as exc:
                if not _wrong_last(exc):
                    self.reaped.discard(inc)  # JetStream trouble: again next round
                    return
                continue  # another survivor won it, or its client came back elsewhere
            except (TimeoutError, NatsError, ConnectionError):
                self.reaped.discard(inc)
                return
            blob = _decode(value)[3]
            if blob is not None:
                self.counters["wills_of_dead_nodes"] += 1
                self.broker.publish(will_message(client_id, blob, self.broker.clock.time()))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nodes.purge("n." + inc), KV_TIMEOUT)
