"""The bridge between this node's broker and the other mqhook nodes, over core NATS (nats-py).

Routing by interest: the node holds one NATS subscription per distinct filter its sessions have
(counted over its subscriptions), and publishes each message published here once, under the subject
``mqhook.cluster.subjects.encode_topic`` makes of its topic. What arrives is handed to
``Broker.route_remote`` for the filter it came for, which delivers it to the local subscribers of that
filter and publishes nothing again.

Two connections:

- ``nc`` (``no_echo``): publishes, and the subscriptions of plain filters; this node's own messages
  never come back on it (its local subscribers were served by the local trie).
- ``qc``: the queue subscriptions of shared groups (``$share/g/f``: queue ``g-HASH(f)``). nats-server
  hands each message to one member of a queue group across all nodes, this node's included, so a
  message published here also comes back here when it is this node's turn; the broker does not serve
  shared groups from its trie while clustered.

The broker calls ``interest_added``, ``interest_removed`` and ``published`` synchronously; they
queue work that one task carries out in order. Cross-node delivery is at most once: a message in
flight when a node or a connection dies is lost (core NATS, no acknowledgement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import nats
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import KeyValueConfig
from nats.js.errors import APIError, ServiceUnavailableError

from mqhook.broker.message import Message
from mqhook.cluster.retained import RetainedReplica
from mqhook.cluster.sessions import SessionOwners
from mqhook.cluster.subjects import encode_topic, filter_subjects, queue_name
from mqhook.mqtt.topics import parse_shared

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

    from mqhook.broker.broker import Broker

log = logging.getLogger("mqhook.cluster")

# nats-server closes a connection whose protocol line is over max_control_line (4 KB by default):
# a topic whose subject would be longer is not sent to the cluster (counted, logged once).
MAX_SUBJECT = 3800
CLOSE_TIMEOUT = 5.0  # seconds a stopping node waits for its NATS connections to drain
BUCKET_TIMEOUT = 15.0  # seconds a starting node waits for JetStream to make its buckets

CONTROL_PREFIX = "mqhook.control."  # control messages between nodes (subscribe_control, publish_control)
_CONTROL_TASKS: set[asyncio.Task[None]] = set()  # control publishes under way (kept from the collector)

# On the wire: [node, topic, payload, qos, retain, properties, sender, username, expiry_in, peerhost]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class ClusterPart(Protocol):
    """A piece of the cluster that lives as long as the bridge (session owners, retained messages):
    started in order once both NATS connections are up, closed in reverse before they drain.
    ``counters`` are plain integers read at scrape time."""

    counters: dict[str, int]

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class ClusterBridge:
    def __init__(self, broker: Broker, nats_url: str, node: str, replicas: int = 1) -> None:
        self.broker = broker
        self.nats_url = nats_url
        self.node = node
        self.replicas = replicas  # [cluster] replicas: copies JetStream keeps of each bucket
        self.js: JetStreamContext | None = None
        # The parts, in start order (each module's class; see ClusterPart).
        self.parts: list[ClusterPart] = []
        self.sessions = SessionOwners(self)  # one owner per client id, takeover, dead nodes' wills (sessions.py)
        self.parts.append(self.sessions)
        self.refs: dict[str, int] = {}  # full filter ($share/... included) -> local subscriptions
        self.subs: dict[str, list[Subscription]] = {}  # full filter -> its NATS subscriptions
        self.counters = {"published": 0, "received": 0, "delivered": 0, "too_long": 0, "too_large": 0, "errors": 0}
        self.retained = RetainedReplica(self)  # retained messages in a KV bucket (cluster/retained.py)
        self.parts.append(self.retained)
        self.nc: NatsClient | None = None
        self.qc: NatsClient | None = None
        self._ops: deque[tuple[str, Any, Any]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned_long = False
        self._warned_large = False
        self.max_payload = 1 << 20  # the server's, once connected (nats-server's default: 1 MB)

    async def start(self) -> None:
        opts: dict[str, Any] = {"name": self.node, "max_reconnect_attempts": -1, "connect_timeout": 5}
        # "nats://a:4222,nats://b:4222": nats-py takes a list (it does not split a string); the other
        # servers of a NATS cluster are also learnt from its INFO, so a connection whose server dies
        # moves to another one either way; the list matters for the first connection.
        servers = [u.strip() for u in self.nats_url.split(",") if u.strip()]
        # Its subjects all come from subjects.py, valid by construction: nats-py need not check each one.
        self.nc = await nats.connect(servers, no_echo=True, skip_subject_validation=True, **opts)
        self.qc = await nats.connect(servers, **{**opts, "name": self.node + " shared"})
        self.js = self.qc.jetstream()
        self.max_payload = min(self.nc.max_payload, self.qc.max_payload)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqhook-cluster")
        for part in self.parts:
            await part.start()
        log.info("cluster: node %s joined through NATS %s", self.node, self.nats_url)

    async def bucket(self, name: str, **config: Any) -> KeyValue:
        """The JetStream key-value bucket ``name`` (made if missing, ``replicas`` copies, ``config``
        as ``KeyValueConfig``). A cluster that has just started may not have elected its JetStream
        leader yet: retried for up to ``BUCKET_TIMEOUT`` seconds. A server without JetStream is
        named as the cause."""
        assert self.js is not None and self.qc is not None
        if not self.qc._server_info.get("jetstream"):  # what the server said in its INFO
            raise ConnectionError(
                f"the NATS server at {self.nats_url} has no JetStream (start nats-server with -js): "
                "mqhook keeps the cluster's session owners and retained messages there"
            )
        deadline = asyncio.get_running_loop().time() + BUCKET_TIMEOUT
        while True:
            try:
                return await self.js.create_key_value(KeyValueConfig(bucket=name, replicas=self.replicas, **config))
            except (NatsTimeoutError, ServiceUnavailableError, NoRespondersError, APIError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise ConnectionError(f"JetStream did not make the bucket {name!r}: {exc}") from exc
                await asyncio.sleep(0.25)

    async def close(self) -> None:
        for part in reversed(self.parts):
            try:
                await part.close()
            except Exception:
                log.exception("cluster: closing %s failed", type(part).__name__)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in (self.nc, self.qc):
            if client is not None and not client.is_closed:
                try:  # drain only a live connection, bounded: a server that is gone must not hold the stop
                    if not client.is_connected:
                        raise ConnectionError("not connected")
                    await asyncio.wait_for(client.drain(), CLOSE_TIMEOUT)
                except Exception:
                    await client.close()

    async def flush(self) -> None:
        """Wait until the queued work is done and the server has seen it (tests, shutdown)."""
        while self._ops:
            await asyncio.sleep(0.005)
        for client in (self.nc, self.qc):
            if client is not None and client.is_connected:
                await client.flush()

    # -- the broker's side (synchronous) ------------------------------------------------------

    def interest_added(self, topic_filter: str) -> None:
        n = self.refs.get(topic_filter, 0)
        self.refs[topic_filter] = n + 1
        if n == 0:
            self._queue(("i", topic_filter, None))

    def interest_removed(self, topic_filter: str) -> None:
        n = self.refs.get(topic_filter, 0) - 1
        if n > 0:
            self.refs[topic_filter] = n
            return
        self.refs.pop(topic_filter, None)
        self._queue(("i", topic_filter, None))

    def published(self, msg: Message) -> None:
        if msg.retain:
            self.retained.local(msg)
        subject = encode_topic(msg.topic)
        if len(subject) > MAX_SUBJECT:
            self.counters["too_long"] += 1
            if not self._warned_long:
                self._warned_long = True
                log.warning("cluster: topic %r too long for a NATS subject; not sent to other nodes", msg.topic[:80])
            return
        expiry_in = None
        if msg.expiry_at is not None:
            expiry_in = msg.expiry_at - self.broker.clock.time()
        body = _encoder.encode(
            (
                self.node,
                msg.topic,
                msg.payload,
                msg.qos,
                msg.retain,
                msg.properties,
                msg.sender,
                msg.username,
                expiry_in,
                msg.peerhost,
            )
        )
        if len(body) + len(subject) > self.max_payload:
            self.counters["too_large"] += 1
            if not self._warned_large:
                self._warned_large = True
                log.warning(
                    "cluster: a message on %r is over the NATS server's max_payload (%d bytes); not sent to "
                    "other nodes (counted too_large; raise max_payload in nats-server's config)",
                    msg.topic[:80],
                    self.max_payload,
                )
            return
        self._queue(("p", subject, body))

    def _queue(self, op: tuple[str, Any, Any]) -> None:
        self._ops.append(op)
        self._wake.set()

    # -- I/O ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        ops = self._ops
        while True:
            if not ops:
                self._wake.clear()
                await self._wake.wait()
                continue
            kind, a, b = ops[0]
            try:
                if kind == "p":
                    assert self.nc is not None
                    await self.nc.publish(a, b)
                    self.counters["published"] += 1
                else:
                    await self._reconcile(a)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters["errors"] += 1
                log.exception("cluster: %s %r failed", "publish" if kind == "p" else "subscription of", a)
            ops.popleft()

    async def _reconcile(self, topic_filter: str) -> None:
        """Make the NATS subscriptions of ``topic_filter`` match whether a local session wants it."""
        wanted = topic_filter in self.refs
        held = self.subs.get(topic_filter)
        if wanted and held is None:
            group, real = parse_shared(topic_filter)
            subjects = filter_subjects(real)
            if any(len(s) > MAX_SUBJECT for s in subjects):
                self.counters["too_long"] += 1
                log.warning("cluster: filter %r too long for a NATS subject; other nodes' messages miss it", real)
                return
            cb = self._callback(topic_filter)
            if group is None:
                assert self.nc is not None
                self.subs[topic_filter] = [await self.nc.subscribe(s, cb=cb) for s in subjects]
            else:
                assert self.qc is not None
                queue = queue_name(group, real)
                self.subs[topic_filter] = [await self.qc.subscribe(s, queue=queue, cb=cb) for s in subjects]
        elif not wanted and held is not None:
            del self.subs[topic_filter]
            for sub in held:
                await sub.unsubscribe()

    def _callback(self, topic_filter: str) -> Any:
        broker = self.broker
        counters = self.counters

        async def on_message(m: Msg) -> None:
            counters["received"] += 1
            try:
                _node, topic, payload, qos, retain, props, sender, username, expiry_in, peerhost = _decoder.decode(
                    m.data
                )
            except (msgspec.DecodeError, ValueError, TypeError):
                counters["errors"] += 1
                log.warning("cluster: undecodable message on %s", m.subject)
                return
            if "User-Property" in props:
                props["User-Property"] = [tuple(p) for p in props["User-Property"]]
            expiry_at = None
            if expiry_in is not None:
                if expiry_in <= 0:
                    return  # expired on the way
                expiry_at = broker.clock.time() + expiry_in
            msg = Message(topic, payload, qos, retain, props, sender, expiry_at, username, peerhost)
            counters["delivered"] += broker.route_remote(msg, topic_filter)

        return on_message

    # -- control messages between nodes (not MQTT messages; e.g. the admin state of --workers) -----

    async def subscribe_control(self, name: str, cb: Any) -> None:
        """``cb(data: bytes)`` (on the loop) for each control message ``name`` another node publishes
        (this node's own never come back: ``nc`` is no_echo). Subject ``mqhook.control.NAME``,
        outside the topics' ``mqhook.m.``."""
        assert self.nc is not None

        async def on_control(m: Msg) -> None:
            cb(m.data)

        await self.nc.subscribe(CONTROL_PREFIX + name, cb=on_control)

    def publish_control(self, name: str, data: bytes) -> None:
        """Send ``data`` as control message ``name`` to every other node: best effort (a node that is
        not connected misses it), not counted among the messages."""
        nc = self.nc
        if nc is None or nc.is_closed:
            return
        task = asyncio.get_running_loop().create_task(nc.publish(CONTROL_PREFIX + name, data))
        _CONTROL_TASKS.add(task)
        task.add_done_callback(self._control_done)

    def _control_done(self, task: asyncio.Task[None]) -> None:
        _CONTROL_TASKS.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.counters["errors"] += 1
            log.warning("cluster: a control message was not sent: %s", task.exception())
