"""Retained messages cluster-wide: a JetStream key-value bucket, with each node's trie as its replica.

The bucket ``mqhook_retained`` (history 1) holds the last retained message of every topic in the
cluster, and is the source of truth. Each node keeps its broker's ``RetainedStore`` (a trie) as its
local replica and index: wildcard lookups for new subscriptions stay local and never touch NATS.

- **Keys**: a topic's levels, each escaped as in ``mqhook.cluster.subjects`` (bytes outside
  ``[A-Za-z0-9_-]`` as ``=XX``, an empty level as ``=``), joined by ``.``: injective, valid as a key,
  ``$`` topics included. A topic whose KV subject would be longer than ``MAX_SUBJECT`` stays on this
  node only (counted ``too_long``), as does a message bigger than the server's ``max_payload``
  (``too_large``).
- **Values**: msgpack ``[topic, payload, qos, properties, sender, username, expiry, node, peerhost]``,
  ``expiry`` an absolute wall-clock time (or None), turned back into the broker clock on each node.
  An empty retained payload deletes the key (a KV delete marker).
- **Writing**: ``local(msg)`` (from ``ClusterBridge.published``, on the broker's thread) queues the
  topic's newest change if the local broker accepted it (its limits), and returns. One task writes
  the queue: the latest change per key (a burst on one topic is written once), up to ``BATCH`` keys
  at a time, never two writes of one key at once. A write that fails because NATS or JetStream is
  unreachable is retried, with backoff, until a newer change of its key supersedes it.
- **Applying**: an ordered consumer on the bucket (last value per key first, then every change)
  hands each change, in KV order, this node's own included, to ``Broker.apply_retained`` (the local
  limits hold; journaled for ``durable_sessions``; not routed). Every write carries the header
  ``Mqhook-Origin: INSTANCE SEQ``. While this node has a change of a key on its way, entries of that
  key before it in KV order are skipped, so a node never reverts, even briefly, to an older value;
  when its echo comes, the original message is kept. With history 1 the KV may replace an entry
  before a consumer reads it, so an echo may never come: once the write is acknowledged at
  revision R, the first entry after R (read before or after the acknowledgement) ends the wait and
  is applied. So two nodes setting one topic at once both end with the KV's last write.
- **Start**: ``start`` returns once the bucket's current values are applied (the app starts the
  bridge before its listeners), so a node started later has every retained message at once.

``durable_sessions`` with ``[cluster]``: the KV is the source of truth. ``App.start`` starts the
cluster (which loads the KV) before ``DurableSessions.restore``; while clustered,
``Broker.restore_retained`` does not put back what the disk holds but journals the topic, so the
disk is rewritten from what the KV gave (a message the KV no longer has, cleared or replaced while
this node was down, is not revived). A message retained when this node was not yet clustered is
not copied into the KV.

Expired messages: a node drops one that has expired when it applies it, and the broker drops
expired ones on lookup; the KV keeps an expired message until its topic is set or cleared again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from functools import lru_cache
from typing import TYPE_CHECKING

import msgspec
from nats.js import api
from nats.js.errors import APIError, ServiceUnavailableError

from mqhook.broker.message import Message
from mqhook.cluster.subjects import decode_level, encode_level

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from mqhook.cluster.bridge import ClusterBridge

__all__ = ["BUCKET", "RetainedReplica", "key_topic", "topic_key"]

log = logging.getLogger("mqhook.cluster")

BUCKET = "mqhook_retained"
MAX_SUBJECT = 3800  # as the bridge's: nats-server's max_control_line is 4 KB
BATCH = 64  # keys written at once
LOAD_TIMEOUT = 30.0  # seconds start() waits for the bucket's values without any arriving
# The consumer's heartbeat: two missed (a restarted server forgot the consumer) and nats-py makes it
# again from the last entry read.
HEARTBEAT = 1.0
ORIGIN = "Mqhook-Origin"
KV_OP = "KV-Operation"
MARKER = "Nats-Marker-Reason"  # nats-server 2.11+: a marker the server placed (max age, purge, remove)
_PREFIX = f"$KV.{BUCKET}."

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


@lru_cache(maxsize=4096)
def topic_key(topic: str) -> str:
    """A topic name -> its key in the bucket (every level one escaped token, never empty)."""
    return ".".join(map(encode_level, topic.split("/")))


def key_topic(key: str) -> str:
    """The inverse of ``topic_key``."""
    return "/".join(map(decode_level, key.split(".")))


class _Pending:
    """This node's newest change of a key, until the KV shows where it landed."""

    __slots__ = ("msg", "rev", "seq", "skipped", "topic")

    def __init__(self, seq: int, topic: str, msg: Message | None) -> None:
        self.seq = seq
        self.topic = topic
        self.msg = msg
        self.rev = 0  # its revision in the KV once acknowledged
        self.skipped: Msg | None = None  # the last KV entry of the key skipped meanwhile


class RetainedReplica:
    """The bridge's part for retained messages (see the module docstring)."""

    name = "retained"  # its counters' name in /api/v1/stats and the metrics

    def __init__(self, bridge: ClusterBridge) -> None:
        self.bridge = bridge
        self.broker = bridge.broker
        self.counters = {
            "puts": 0,  # writes of a retained message to the KV
            "deletes": 0,  # delete markers written (a retained message cleared here)
            "applied": 0,  # KV changes applied to the local store (this node's own included)
            "skipped": 0,  # KV entries older than a change of this node still on its way
            "expired": 0,  # KV values already expired when they arrived
            "too_long": 0,
            "too_large": 0,
            "retries": 0,  # writes retried (NATS or JetStream unreachable)
            "errors": 0,
        }
        self._me = secrets.token_hex(8) + " "  # this process's Mqhook-Origin prefix
        self._seq = 0
        self._latest: dict[str, _Pending] = {}  # key -> this node's newest change, until it lands
        self._dirty: dict[str, _Pending] = {}  # changes not yet written, by key
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued nor being written
        self._idle.set()
        self._loaded = asyncio.Event()
        self._progress = 0  # entries received: start() waits while they come
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    # -- the broker's side (synchronous) ------------------------------------------------------

    def local(self, msg: Message) -> None:
        """A message published on this node with the retain flag, after the broker retained it (or
        not): queue its change of the KV if the local store took it."""
        topic = msg.topic
        if msg.payload:
            if self.broker.retained.get(topic) is not msg:
                return  # over the local limits: not retained here, not retained anywhere
            value: Message | None = msg
        else:
            value = None  # cleared here: cleared everywhere (even if nothing was retained here)
        key = topic_key(topic)
        if len(key) + len(_PREFIX) > MAX_SUBJECT:
            self.counters["too_long"] += 1
            self._warn("topic %r too long for a NATS KV key; its retained message stays on this node", topic)
            return
        self._seq += 1
        op = _Pending(self._seq, topic, value)
        self._latest[key] = op
        self._dirty[key] = op
        self._idle.clear()
        self._wake.set()

    def _warn(self, text: str, topic: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("cluster: " + text, topic[:80])

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        bridge = self.bridge
        await bridge.bucket(BUCKET, history=1, description="mqhook retained messages")
        assert bridge.js is not None
        self._sub = await bridge.js.subscribe(
            _PREFIX + ">",
            stream=f"KV_{BUCKET}",
            cb=self._on_entry,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            idle_heartbeat=HEARTBEAT,
        )
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and (info.delivered is None or not info.delivered.consumer_seq):
            self._loaded.set()  # an empty bucket
        seen = -1
        while not self._loaded.is_set() and seen != self._progress:  # wait while entries keep coming
            seen = self._progress
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._loaded.wait(), LOAD_TIMEOUT)
        if not self._loaded.is_set():
            log.warning("cluster: retained messages still loading from the KV after %.0f s", LOAD_TIMEOUT)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqhook-cluster-retained")
        log.info("cluster: %d retained messages from the KV bucket %s", len(self.broker.retained), BUCKET)

    async def close(self) -> None:
        if self._task is not None:
            bridge = self.bridge
            if bridge.qc is not None and bridge.qc.is_connected:  # write what is queued, bounded
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), 5.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def flush(self) -> None:
        """Wait until every queued change is written (tests)."""
        await self._idle.wait()

    # -- applying the KV ----------------------------------------------------------------------

    async def _on_entry(self, m: Msg) -> None:
        self._progress += 1
        try:
            self._apply(m)
        except Exception:
            self.counters["errors"] += 1
            log.exception("cluster: a retained message from the KV (%s) could not be applied", m.subject[:120])
        if not self._loaded.is_set() and m.metadata.num_pending == 0:
            self._loaded.set()

    def _apply(self, m: Msg) -> None:
        key = m.subject[len(_PREFIX) :]
        pending = self._latest.get(key)
        if pending is not None:  # a change of ours is on its way: entries before it do not count
            headers = m.headers
            origin = headers.get(ORIGIN) if headers else None
            if origin is not None and origin.startswith(self._me) and int(origin[len(self._me) :]) == pending.seq:
                del self._latest[key]  # its echo: keep the original message
                own = pending.msg
                if own is None or self.broker.retained.get(pending.topic) is not own:
                    self.broker.apply_retained(pending.topic, own)
                self.counters["applied"] += 1
                return
            # With history 1 the KV keeps only a key's last entry: an echo replaced before this
            # consumer read it never comes. An entry after our change's revision means just that.
            if not pending.rev or m.metadata.sequence.stream < pending.rev:
                pending.skipped = m
                self.counters["skipped"] += 1
                return
            del self._latest[key]
        self._apply_entry(key, m)

    def _apply_entry(self, key: str, m: Msg) -> None:
        headers = m.headers
        if headers and (KV_OP in headers or MARKER in headers):  # deleted or purged
            self.broker.apply_retained(key_topic(key), None)
            self.counters["applied"] += 1
            return
        topic, msg = self._decode(m.data)
        if msg is None:
            self.counters["expired"] += 1
        self.broker.apply_retained(topic, msg)
        self.counters["applied"] += 1

    def _landed(self, key: str, op: _Pending, rev: int) -> None:
        """``op`` was written at revision ``rev``: if an entry after it was skipped meanwhile (its
        echo was replaced before it could be read), that entry is the key's value."""
        if self._latest.get(key) is not op:
            return  # echoed already, or superseded by a newer change of ours
        op.rev = rev
        skipped = op.skipped
        if skipped is not None and skipped.metadata.sequence.stream > rev:
            del self._latest[key]
            try:
                self._apply_entry(key, skipped)
            except Exception:
                self.counters["errors"] += 1
                log.exception("cluster: a retained message from the KV (%s) could not be applied", key[:120])

    def _decode(self, data: bytes) -> tuple[str, Message | None]:
        """A KV value -> its topic and message (None if it has expired)."""
        topic, payload, qos, props, sender, username, expiry, _node, peerhost = _decoder.decode(data)
        expiry_at = None
        if expiry is not None:
            left = expiry - time.time()
            if left <= 0:
                return topic, None
            expiry_at = self.broker.clock.time() + left
        if "User-Property" in props:
            props["User-Property"] = [tuple(p) for p in props["User-Property"]]
        return topic, Message(topic, payload, qos, True, props, sender, expiry_at, username, peerhost)

    # -- writing the KV -----------------------------------------------------------------------

    async def _run(self) -> None:
        dirty = self._dirty
        backoff = 0.0
        while True:
            if not dirty:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = []
            for key in dirty:
                batch.append((key, dirty[key]))
                if len(batch) == BATCH:
                    break
            for key, _op in batch:
                del dirty[key]
            retry = await asyncio.gather(*(self._write(key, op) for key, op in batch))
            if any(retry):
                backoff = min(max(backoff * 2, 0.1), 2.0)
                await asyncio.sleep(backoff)
            else:
                backoff = 0.0

    async def _write(self, key: str, op: _Pending) -> bool:
        """Write one change; True if it failed and is queued again (NATS or JetStream unreachable)."""
        bridge = self.bridge
        assert bridge.js is not None and bridge.qc is not None
        seq, topic, msg = op.seq, op.topic, op.msg
        headers = {ORIGIN: f"{self._me}{seq}"}
        if msg is None:
            headers[KV_OP] = "DEL"
            body = b""
        else:
            expiry = None
            if msg.expiry_at is not None:
                expiry = msg.expiry_at - self.broker.clock.time() + time.time()
            body = _encoder.encode(
                (
                    topic,
                    msg.payload,
                    msg.qos,
                    msg.properties,
                    msg.sender,
                    msg.username,
                    expiry,
                    bridge.node,
                    msg.peerhost,
                )
            )
            if len(body) + 200 > bridge.qc.max_payload:
                self.counters["too_large"] += 1
                self._warn("the retained message of %r is too large for NATS; it stays on this node", topic)
                self._unsent(key, op)
                return False
        try:
            ack = await bridge.js.publish(_PREFIX + key, body, headers=headers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, APIError) and not isinstance(exc, ServiceUnavailableError):
                self.counters["errors"] += 1
                log.warning("cluster: the KV refused the retained message of %r: %s", topic[:80], exc)
                self._unsent(key, op)
                return False
            self.counters["retries"] += 1
            if key not in self._dirty and self._latest.get(key) is op:  # not superseded
                self._dirty[key] = op
            return True
        self.counters["deletes" if msg is None else "puts"] += 1
        self._landed(key, op, ack.seq)
        return False

    def _unsent(self, key: str, op: _Pending) -> None:
        """A change the KV will never hold (too large, refused): it stays on this node, until the
        topic changes again anywhere (the entries skipped while it was on its way were older)."""
        if self._latest.get(key) is op:
            del self._latest[key]
