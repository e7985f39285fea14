"""``Webhook``: one configured webhook, from the events it accepts to the requests that carry them.

A ``Webhook`` is an ``EventConsumer`` of the events layer (``name``, ``events``, ``topics``,
``payload_encoding``, a non-blocking ``put``, ``saturated``, ``on_relief``) and the delivery engine
behind it. ``put`` runs on the broker's hot path: it appends the event's JSON (shared by every
webhook) to the bounded queue (``queue.EventQueue``) and, only if the sender sleeps on it, wakes
the sender. No logging, no locks, no per-event objects beyond the queue entry. It must be called
from the thread running the event loop (the broker's only thread).

The sender task turns queued events into requests (``request.RequestBuilder``) sent through one
``http.HttpClient`` (``request.make_client``): a keep-alive pool of at most ``pool_size``
connections, each attempt bounded by ``request_timeout`` and its connect by ``connect_timeout``
(EMQX: one connection pool per connector, ``pool_size`` 8). The sender:

1. waits for events; with ``batch_size > 1`` and ``batch_time > 0`` it lingers up to ``batch_time``
   for a full batch (EMQX sends one event per request and has no batching);
2. keeps at most ``inflight_window`` requests taken from the queue and not finished (sending,
   waiting for a pooled connection, or waiting to retry); at most ``pool_size`` of them are on the
   wire at once, so ``request_timeout`` measures the HTTP exchange, not a wait for the pool;
3. with ``ordering = "per_client"`` never has two unfinished requests holding events of the same
   clientid, so one client's events are never sent before its earlier ones complete, while other
   clients proceed (EMQX needs ``inflight_window = 1`` for that, globally);
4. retries per ``request.classify`` with ``request.backoff_delay`` up to ``max_retries``; every event
   ends counted as success, failed or dropped by reason (never silently lost). With ``overflow =
   "backpressure"`` retriable outcomes are retried without a limit (the queue's bound then pauses
   the publishers: nothing is dropped while mqhook runs); a ``durable`` webhook retries them until
   the batch's oldest event is older than ``max_event_age`` (``dropped.expired``).

Durable webhooks (``durable = true``) queue into a ``spool.SpoolQueue`` (events on disk until done)
and send a ``webhook-id`` made of the spool's identity and position, the same after a restart.
With ``dead_letter = true`` the events given up (``failed``, ``retries_exhausted``, ``expired``)
also go to the ``deadletter.DeadLetters`` store, counted ``dead_lettered`` (or
``dead_letter_refused`` when it is full).

A request task that finishes sends the next full batch itself (no sender wake-up, no new task:
under load every request then costs one loop step fewer).

``close(drain_timeout)`` refuses new events, stops the sender from lingering, lets it send what it
can within the timeout, then cancels; whatever is left is counted ``dropped["stopped"]`` and
logged (a durable webhook leaves it in its spool for the next start, and logs that).

Counters are plain ints on the webhook (``webhook.success``...; see ``counters.Counters``). Metrics,
once per request (never per event): ``batch_events`` when a request is built, ``outcomes`` and
``request_seconds`` per attempt, and on a 2xx ``delivery_seconds``, the age of the batch's oldest
event (its ``timestamp``, read from its JSON) counted once for each event of the batch: exact with
``batch_size`` 1, an upper bound for the newer events of a larger batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from mqhook.errors import ConfigError
from mqhook.webhook.counters import Counters
from mqhook.webhook.deadletter import DeadLetters
from mqhook.webhook.http import HttpClient
from mqhook.webhook.model import WebhookConfig
from mqhook.webhook.queue import NEVER, Entry, EventQueue, MemoryQueue
from mqhook.webhook.request import (
    FAIL,
    SUCCESS,
    RenderRefused,
    Request,
    RequestBuilder,
    backoff_delay,
    classify,
    created_ms,
    describe,
    make_client,
    retry_statuses,
    send_once,
)
from mqhook.webhook.spool import Spool, SpoolQueue, spool_dir

__all__ = ["Webhook"]

log = logging.getLogger(__name__)
EXHAUSTED = "retries_exhausted"
EXPIRED = "expired"

Taken = tuple[Request, list[Entry], "set[str] | None"]  # a request, its events, the clientids it holds


class Webhook(Counters):
    """One webhook: config, queue, sender and counters (see the module docstring)."""

    # Slots: ``put`` runs for every event, and with this many attributes a plain instance dict
    # loses CPython's fast attribute access (3.11 shares dict keys for at most 30 attributes;
    # measured ~470 instructions more per put, callgrind).
    __slots__ = (
        "_backoff",
        "_backpressure",
        "_batch_size",
        "_builder",
        "_busy",
        "_client",
        "_closed",
        "_closing",
        "_counts",
        "_durable",
        "_failing",
        "_left_spooled",
        "_linger",
        "_max_age",
        "_max_retries",
        "_per_client",
        "_pool",
        "_progress",
        "_queue",
        "_relief",
        "_retry_forever",
        "_retry_on",
        "_sender",
        "_sending",
        "_tasks",
        "_wake_on_done",
        "_window",
        "config",
        "dead",
        "dead_letter_refused",
        "dead_lettered",
        "events",
        "name",
        "payload_encoding",
        "rule_id",
        "saturated",
        "spool",
        "topics",
    )

    def __init__(
        self,
        cfg: WebhookConfig,
        queue: EventQueue | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        spool: Spool | None = None,
        dead: DeadLetters | None = None,
    ) -> None:
        """``data_dir`` holds the spool and dead letters (``durable``, ``dead_letter``); ``spool`` and
        ``dead`` are those of the webhook this one replaces (``WebhookManager.replace``)."""
        super().__init__()
        self.config = cfg
        self.name = cfg.name
        self.events: frozenset[str] = cfg.event_set
        self.topics: tuple[str, ...] = tuple(cfg.topics)
        self.payload_encoding: str = cfg.payload_encoding
        self.rule_id = cfg.rule_id
        self.dead_lettered = 0  # events stored as dead letters
        self.dead_letter_refused = 0  # events given up that the full dead-letter store refused
        self._durable = cfg.durable
        self._left_spooled = 0
        where = spool_dir(data_dir if data_dir is not None else "./data", cfg.name)
        self.spool: Spool | None = None
        if cfg.durable:
            if spool is None:
                segment = max(1 << 20, cfg.max_spool_bytes_n // 4)
                try:
                    spool = Spool(where, segment, cfg.fsync, cfg.fsync_interval.seconds)
                except OSError as exc:  # locked by another process, or the directory cannot be made
                    raise ConfigError(f"webhook {cfg.name!r}: cannot open its spool: {exc}") from None
            else:
                spool.fsync, spool.fsync_interval = cfg.fsync, cfg.fsync_interval.seconds
            self.spool = spool
            if queue is None:
                queue = SpoolQueue(spool, cfg.max_queued_events, cfg.max_spool_bytes_n, cfg.overflow, self.dropped)
        self.dead: DeadLetters | None = None
        if cfg.dead_letter:
            try:
                self.dead = dead or DeadLetters(where, cfg.max_dead_letter_bytes_n, fsync=cfg.fsync != "never")
            except OSError as exc:
                raise ConfigError(f"webhook {cfg.name!r}: cannot open its dead letters: {exc}") from None
            self.dead.max_bytes = cfg.max_dead_letter_bytes_n
        if queue is None:  # (not ``queue or``: an empty queue is falsy)
            queue = MemoryQueue(cfg.max_queued_events, cfg.max_buffer_bytes_n, cfg.overflow, self.dropped)
        self._queue: EventQueue = queue
        self._backpressure = cfg.overflow == "backpressure"
        self.saturated = False  # True from when the queue passes 80% of a bound until it falls to 50% of both
        self._relief: list[Callable[[], None]] = []
        self._closed = False
        # Where request results are counted: this webhook, or its successor once handed over.
        self._counts: Webhook = self
        # The sender's settings, read once.
        self._builder = RequestBuilder(cfg)
        self._batch_size = cfg.batch_size
        self._linger = cfg.batch_time_s if cfg.batch_size > 1 else 0.0
        self._window = cfg.inflight_window
        self._per_client = cfg.ordering == "per_client"
        self._max_retries = cfg.max_retries
        self._retry_forever = cfg.durable or cfg.overflow == "backpressure"
        self._max_age = cfg.max_event_age.seconds
        self._backoff = (cfg.retry_backoff_s, cfg.retry_backoff_max_s)
        self._retry_on = retry_statuses(cfg)
        # The sender's state.
        self._busy: set[str] = set()  # clientids with an unfinished request (per_client ordering)
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: HttpClient | None = None
        self._sender: asyncio.Task[None] | None = None
        self._pool = asyncio.Semaphore(cfg.pool_size)
        self._progress = asyncio.Event()
        self._closing = False
        self._failing = False
        self._wake_on_done = False  # the sender waits for a request to finish
        # Requests of this object not finished: what inflight_window bounds. Equal to ``inflight``
        # except after a hand-over, when the successor's ``inflight`` also counts the old requests.
        self._sending = 0

    # -- EventConsumer ------------------------------------------------------------------------------
    def put(self, raw: bytes, clientid: str) -> bool:
        """Queue one event's JSON (non-blocking). False if it was dropped (overflow, or closed)."""
        self.matched += 1
        if self._closed:
            self.dropped["stopped"] += 1
            return False
        q = self._queue
        if not q.put(raw, clientid):  # wakes the sender if it waits for this many events
            return False
        if self._backpressure and not self.saturated and q.over_high_water:
            self.saturated = True
        return True

    def on_relief(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when no longer saturated (at once if not saturated now)."""
        if self.saturated:
            self._relief.append(callback)
        else:
            callback()

    def _popped(self) -> None:
        """Events left the queue: relieve the publishers once it is under its low water."""
        if self.saturated and self._queue.under_low_water:
            self.saturated = False
            callbacks, self._relief = self._relief, []
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("webhook %s: on_relief callback failed", self.name)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the sender on ``loop`` (default: the running loop). Events put before are kept."""
        if self._sender is None:
            loop = loop or asyncio.get_running_loop()
            self._client = make_client(self.config)
            if self.spool is not None:
                self.spool.start(loop)
            self._sender = loop.create_task(self._run(), name=f"webhook-{self.name}")

    async def close(self, drain_timeout: float = 5.0, discard: bool = False) -> None:
        """Refuse new events, deliver what can be delivered in ``drain_timeout`` s, drop the rest (a
        durable webhook keeps it in its spool, unless ``discard``: the webhook was deleted)."""
        self._closed = True
        self._closing = True
        self._queue.wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while self._sender is not None and not self._sender.done() and (len(self._queue) or self._tasks):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                break
        stopped_before = self.dropped["stopped"]
        pending = [t for t in (self._sender, *self._tasks) if t is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self.spool is not None:
            self._left_spooled += self._queue.clear()
        else:
            self.dropped["stopped"] += self._queue.clear()
        if discard and self._left_spooled:
            self.dropped["stopped"] += self._left_spooled
            self._left_spooled = 0
        self._popped()
        if self._client is not None:
            await self._client.close()
        await self._close_stores(remove_spool=discard)
        stopped = self.dropped["stopped"] - stopped_before
        if self.spool is not None and self._left_spooled:
            log.info(
                "webhook %s: %d event(s) not delivered within %gs stay in the spool (%s) for the next start",
                self.name,
                self._left_spooled,
                drain_timeout,
                self.spool.dir,
            )
        if stopped:
            log.warning(
                "webhook %s: %d event(s) not delivered within %gs dropped at shutdown (counted dropped.stopped)",
                self.name,
                stopped,
                drain_timeout,
            )

    async def _close_stores(self, remove_spool: bool = False) -> None:
        """Close the spool (a last commit) and the dead letters, unless a successor shares them."""
        successor = self._counts
        spool = self.spool
        if spool is not None and (successor is self or successor.spool is not spool):
            await spool.close()
            if remove_spool:  # the events moved to a memory queue: the files must not replay them
                for path in spool.dir.glob("seg-*.log"):
                    path.unlink(missing_ok=True)
                (spool.dir / "ack").unlink(missing_ok=True)
        if self.dead is not None and (successor is self or successor.dead is not self.dead):
            self.dead.close()

    def hand_over(self, new: Webhook) -> int:
        """Make ``new`` (the same webhook with new settings, not started) this one's successor.

        ``new`` continues the counters; the queued events move to it, as many as its bounds take
        (what it drops is counted there, ``queue_full``); requests in flight here finish on the old
        settings and are counted there. This one takes no more events: call ``retire`` next.
        Synchronous, so no event can arrive in between. Returns the events moved."""
        self._closed = True
        new.take_over(self)
        new.dead_lettered, new.dead_letter_refused = self.dead_lettered, self.dead_letter_refused
        new._failing = self._failing
        self._counts = new
        if self._sender is not None:
            self._sender.cancel()  # it only ever waits: cancelling it loses nothing
        q = self._queue
        if isinstance(new._queue, SpoolQueue) and isinstance(q, SpoolQueue) and new.spool is self.spool:
            moved = new._queue.adopt(q)  # the same files: the events move with their positions
            self._popped()
        else:
            entries = q.pop_batch(len(q)) if len(q) else []
            q.done(entries)
            self._popped()
            for raw, key in entries:
                new._queue.put(raw, key)
            moved = len(entries)
        if new._backpressure and new._queue.over_high_water:
            new.saturated = True
        return moved

    async def retire(self, drain_timeout: float) -> None:
        """After ``hand_over``: let the requests in flight finish for up to ``drain_timeout`` s,
        then cancel the rest (counted ``stopped`` on the successor) and close the connections."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=drain_timeout)
        pending = [t for t in (self._sender, *self._tasks) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
        await self._close_stores(remove_spool=self.spool is not None and self._counts.spool is not self.spool)

    # -- introspection ------------------------------------------------------------------------------
    @property
    def queuing(self) -> int:
        return len(self._queue)

    @property
    def queuing_bytes(self) -> int:
        return self._queue.nbytes

    def stats(self) -> dict[str, Any]:
        out = self.counters(len(self._queue), self._queue.nbytes)
        out["saturated"] = self.saturated
        out["enable"] = self.config.enable
        out["durable"] = self._durable
        spool = self.spool
        out["spool_bytes"] = 0 if spool is None or spool.closed else spool.disk_bytes
        out["spool_corrupt"] = 0 if spool is None else spool.corrupt
        out["dead_lettered"] = self.dead_lettered
        out["dead_letter_refused"] = self.dead_letter_refused
        out["dead_letters"] = 0 if self.dead is None else self.dead.count
        out["dead_letter_bytes"] = 0 if self.dead is None else self.dead.nbytes
        return out

    # -- dead letters -----------------------------------------------------------------------------------
    def replay_dead(self, since: float | None = None, until: float | None = None) -> int:
        """Put the dead letters given up in [since, until) back into the queue (counted ``matched`` again);
        those the queue refuses (its overflow policy) stay dead letters. Returns the events requeued."""
        if self.dead is None:
            return 0
        items = self.dead.take(since, until)
        refused = []
        q = self._queue
        for item in items:
            _, _, key, data = item
            if self._closed or not q.put(data, key):
                if not self._closed:
                    self.dropped["queue_full"] -= 1  # not dropped: kept as a dead letter
                refused.append(item)
        if refused:
            self.dead.put_back(refused)
        n = len(items) - len(refused)
        self.matched += n
        if self._backpressure and not self.saturated and q.over_high_water:
            self.saturated = True
        return n

    def _bury(self, batch: list[Entry], reason: str) -> None:
        """Events given up for good: into the dead letters, if this webhook keeps them."""
        dead = self.dead
        if dead is None:
            return
        c = self._counts
        try:
            stored = dead.add(((data, key) for data, key in batch), reason, time.time())
        except OSError as exc:
            stored = 0
            log.error("webhook %s: cannot store dead letters: %s", self.name, exc)
        c.dead_lettered += stored
        c.dead_letter_refused += len(batch) - stored

    def __repr__(self) -> str:
        return f"<Webhook {self.name} queuing={len(self._queue)} inflight={self.inflight}>"

    # -- the sender -----------------------------------------------------------------------------------
    async def _run(self) -> None:
        q = self._queue
        while True:
            if not len(q):
                await q.wait(1)
                continue
            if self._sending >= self._window:
                await self._wait_for_done(NEVER)
                continue
            if self._linger and len(q) < self._batch_size and not self._closing:
                await q.wait(self._batch_size, self._linger)
            batch = q.pop_batch(self._batch_size, self._busy if self._per_client else None)
            if not batch:  # every queued event belongs to a client with a request unfinished
                await self._wait_for_done(len(q) + 1)  # or for a new event
                continue
            self._popped()
            self._spawn(batch)

    async def _wait_for_done(self, count: int) -> None:
        """Until a request finishes (or the queue holds ``count`` events)."""
        self._wake_on_done = True
        try:
            await self._queue.wait(count)
        finally:
            self._wake_on_done = False

    def _spawn(self, batch: list[Entry]) -> None:
        taken = self._take(batch)
        if taken is None:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(*taken))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self, batch: list[Entry]) -> Taken | None:
        """Build the request for (the head of) a popped batch and count it in flight; None if refused."""
        q = self._queue
        try:
            req = self._builder.build(batch)
        except Exception as exc:  # RenderRefused, or a bug: never let the sender die
            if not isinstance(exc, RenderRefused):
                log.exception("webhook %s: cannot build a request", self.name)
            q.unpop(batch[1:])
            q.done(batch[:1])
            self._counts.dropped["request_refused"] += 1
            self._note_error(f"request refused, not sent: {exc}")
            return None
        if req.count < len(batch):
            q.unpop(batch[req.count :])
            batch = batch[: req.count]
        keys: set[str] | None = None
        if self._per_client:
            keys = {key for _, key in batch}
            self._busy |= keys
        if isinstance(q, SpoolQueue) and self.spool is not None:  # the same id after a restart
            req.msg_id = f"msg_{self.spool.ident}{q.seq_of(batch[0]):012x}{req.count:04x}"
        c = self._counts
        c.batch_events.observe(req.count)
        c.inflight += 1
        self._sending += 1
        c.inflight_events += req.count
        self._progress.set()
        return req, batch, keys

    def _next(self) -> Taken | None:
        """A full batch to send right away, from a request task that just finished; None: leave it to
        the sender (it lingers for partial batches and waits out the window)."""
        q = self._queue
        if len(q) < self._batch_size or self._sending >= self._window:
            return None
        batch = q.pop_batch(self._batch_size, self._busy if self._per_client else None)
        if not batch:
            return None
        self._popped()
        return self._take(batch)

    async def _deliver(self, req: Request, batch: list[Entry], keys: set[str] | None) -> None:
        """Send one request to its end, then, while full batches wait, the next ones."""
        taken: Taken | None = (req, batch, keys)
        while taken is not None:
            await self._deliver_one(*taken)
            taken = self._next()

    async def _deliver_one(self, req: Request, batch: list[Entry], keys: set[str] | None) -> None:
        verdict = None
        try:
            verdict = await self._attempts(req, created_ms(batch[0][0]))
        except Exception as exc:  # a bug, not an HTTP outcome: count the events failed, keep going
            log.exception("webhook %s: delivery error", self.name)
            self._counts.record_error(f"internal error: {exc!r}")
            verdict = FAIL
        finally:
            n = req.count
            c = self._counts  # read now: the webhook may have been handed over meanwhile
            c.inflight -= 1
            self._sending -= 1
            c.inflight_events -= n
            if verdict == SUCCESS:
                c.success += n
                created = created_ms(batch[0][0])
                if created is not None:
                    c.delivery_seconds.observe(max(0.0, time.time() - created / 1000.0), n)
            elif verdict == FAIL:
                c.failed += n
                self._bury(batch, "failed")
            elif verdict in (EXHAUSTED, EXPIRED):
                c.dropped[verdict] += n
                self._bury(batch, verdict)
            elif self.spool is not None:  # cancelled by close() or retire(): still on disk
                self._keep_spooled(batch)
            else:  # cancelled by close()
                c.dropped["stopped"] += n
            if keys:
                self._busy -= keys
            if verdict is not None or self.spool is None:
                self._queue.done(batch)
                if self.saturated:  # a spool's bounds count the events in flight too
                    self._popped()
            self._progress.set()
            if self._wake_on_done:
                self._queue.wake()

    def _keep_spooled(self, batch: list[Entry]) -> None:
        """A durable request cut short: after a change of settings its events go back to the head of
        the successor's queue (same spool); at shutdown they stay on disk for the next start."""
        q = self._queue
        assert isinstance(q, SpoolQueue)
        successor = self._counts
        if successor is not self and isinstance(successor._queue, SpoolQueue) and successor.spool is self.spool:
            successor._queue.requeue_from(q, batch)
        else:
            q.forget_popped(batch)
            self._left_spooled += len(batch)

    async def _attempts(self, req: Request, created: int | None = None) -> str:
        """Send until success, a non-retriable answer, or the retry budget is spent: ``max_retries``,
        none with backpressure (publishers wait instead), ``max_event_age`` for a durable webhook."""
        assert self._client is not None
        attempt = 0
        born = created / 1000.0 if created is not None else time.time()
        while True:
            async with self._pool:
                out = await send_once(self._client, req, self._builder.attempt_headers(req))
            c = self._counts
            c.requests += 1
            c.outcomes[out.kind] += 1
            c.request_seconds.observe(out.latency)
            c.deliveries.append((time.time(), req.count, attempt, out.kind, out.status, out.error, out.latency))
            verdict = classify(out, self._retry_on)
            if verdict == SUCCESS:
                self._note_success()
                return SUCCESS
            self._note_error(describe(req, out))
            if verdict == FAIL:
                return FAIL
            if self._durable:
                if time.time() - born > self._max_age:
                    return EXPIRED
            elif attempt >= self._max_retries and not self._retry_forever:
                return EXHAUSTED
            delay = backoff_delay(attempt, self._backoff[0], self._backoff[1], out)
            attempt += 1
            self._counts.retried += req.count
            await asyncio.sleep(delay)

    def _note_error(self, message: str) -> None:
        c = self._counts
        c.record_error(message)
        if not c._failing:
            c._failing = True
            log.warning("webhook %s: %s", self.name, message)

    def _note_success(self) -> None:
        c = self._counts
        if c._failing:
            c._failing = False
            log.info("webhook %s: delivering again", self.name)

    @property
    def failing(self) -> bool:
        """The last attempt failed (and none succeeded since)."""
        return self._failing
