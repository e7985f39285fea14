"""The delivery engine of one webhook: a sender task that turns queued events into requests.

Per webhook: one ``http.HttpClient`` (``request.make_client``): a keep-alive pool of at most
``pool_size`` connections, each attempt bounded by ``request_timeout`` and its connect by
``connect_timeout`` (EMQX: one connection pool per connector, ``pool_size`` 8). It replaced
aiohttp's ``ClientSession``, which cost 3-5x the CPU per request (``bench/test_bench_http.py``).
The sender:

1. waits for events; with ``batch_size > 1`` and ``batch_time > 0`` it lingers up to
   ``batch_time`` for a full batch (EMQX sends one event per request and has no batching);
2. keeps at most ``inflight_window`` requests taken from the queue and not finished (sending,
   waiting for a pooled connection, or waiting to retry); at most ``pool_size`` of them are on
   the wire at once, so ``request_timeout`` measures the HTTP exchange, not a wait for the pool;
3. with ``ordering = "per_client"`` never has two unfinished requests holding events of the
   same clientid, so one client's events are never sent before its earlier ones complete,
   while other clients proceed (EMQX needs ``inflight_window = 1`` for that, globally);
4. retries per ``request.classify`` with ``request.backoff_delay`` up to ``max_retries``; every
   event ends counted as success, failed or dropped by reason (never silently lost).

``close(drain_timeout)`` stops the sender from lingering, lets it send what it can within the
timeout, then cancels; whatever is left is counted ``dropped["stopped"]``.

Metrics, once per request (never per event): ``batch_events`` when a request is built,
``outcomes`` and ``request_seconds`` per attempt, and on a 2xx ``delivery_seconds``, the age of the
batch's oldest event (its ``timestamp``, read from its JSON) counted once for each event of the
batch: exact with ``batch_size`` 1, an upper bound for the newer events of a larger batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mqhook.webhook.counters import Counters
from mqhook.webhook.http import HttpClient
from mqhook.webhook.model import WebhookConfig
from mqhook.webhook.queue import Entry, EventQueue
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

log = logging.getLogger(__name__)
NEVER = 1 << 62  # a queue length puts never reach: only a finished request wakes the sender
EXHAUSTED = "retries_exhausted"


class Dispatcher:
    """Sender task and request tasks of one webhook; counters are bumped on ``counters``."""

    def __init__(
        self,
        cfg: WebhookConfig,
        queue: EventQueue,
        counters: Counters,
        builder: RequestBuilder,
        on_popped: Callable[[], None],
    ) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._queue = queue
        self._c = counters
        self._builder = builder
        self._on_popped = on_popped
        self._batch_size = cfg.batch_size
        self._linger = cfg.batch_time_s if cfg.batch_size > 1 else 0.0
        self._window = cfg.inflight_window
        self._per_client = cfg.ordering == "per_client"
        self._max_retries = cfg.max_retries
        self._backoff = (cfg.retry_backoff_s, cfg.retry_backoff_max_s)
        self._retry_on = retry_statuses(cfg)
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: HttpClient | None = None
        self._sender: asyncio.Task[None] | None = None
        self._pool = asyncio.Semaphore(cfg.pool_size)
        self._progress = asyncio.Event()
        self._closing = False
        self._failing = False
        # The sender's wait: put() wakes it once the queue holds ``want`` events.
        self.waiter: asyncio.Future[None] | None = None
        self.want = 1
        self._wake_on_done = False

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sender is None:
            self._client = make_client(self._cfg)
            self._sender = loop.create_task(self._run(), name=f"webhook-{self.name}")

    async def close(self, drain_timeout: float) -> None:
        """Send what can be sent within ``drain_timeout`` seconds, then cancel the rest."""
        self._closing = True
        self.wake()
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
        pending = [t for t in (self._sender, *self._tasks) if t is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._c.dropped["stopped"] += self._queue.clear()
        self._on_popped()
        if self._client is not None:
            await self._client.close()

    # -- waiting -------------------------------------------------------------------------
    def wake(self) -> None:
        fut = self.waiter
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _wait(self, want: int, timeout: float | None = None, on_done: bool = False) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.waiter, self.want, self._wake_on_done = fut, want, on_done
        handle = None if timeout is None else loop.call_later(timeout, self.wake)
        try:
            await fut
        finally:
            self.waiter = None
            if handle is not None:
                handle.cancel()

    # -- the sender ----------------------------------------------------------------------
    async def _run(self) -> None:
        q = self._queue
        while True:
            if not len(q):
                await self._wait(1)
                continue
            if self._c.inflight >= self._window:
                await self._wait(NEVER, on_done=True)
                continue
            if self._linger and len(q) < self._batch_size and not self._closing:
                await self._wait(self._batch_size, self._linger)
            batch = q.pop_batch(self._batch_size, self._busy if self._per_client else None)
            if not batch:  # every queued event belongs to a client with a request unfinished
                await self._wait(len(q) + 1, on_done=True)
                continue
            self._on_popped()
            self._spawn(batch)

    def _spawn(self, batch: list[Entry]) -> None:
        taken = self._take(batch)
        if taken is None:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(*taken))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self, batch: list[Entry]) -> tuple[Request, list[Entry], set[str] | None] | None:
        """Build the request for (the head of) a popped batch and count it in flight; None if refused."""
        q = self._queue
        try:
            req = self._builder.build(batch)
        except Exception as exc:  # RenderRefused, or a bug: never let the sender die
            if not isinstance(exc, RenderRefused):
                log.exception("webhook %s: cannot build a request", self.name)
            q.unpop(batch[1:])
            q.done(batch[:1])
            self._c.dropped["request_refused"] += 1
            self._note_error(f"request refused, not sent: {exc}")
            return None
        if req.count < len(batch):
            q.unpop(batch[req.count :])
            batch = batch[: req.count]
        keys: set[str] | None = None
        if self._per_client:
            keys = {key for _, key in batch}
            self._busy |= keys
        self._c.batch_events.observe(req.count)
        self._c.inflight += 1
        self._c.inflight_events += req.count
        self._progress.set()
        return req, batch, keys

    def _next(self) -> tuple[Request, list[Entry], set[str] | None] | None:
        """A full batch to send right away, from a request task that just finished (no sender wake-up,
        no new task: under load every request then costs one loop step fewer). None: leave it to
        the sender (it lingers for partial batches and waits out the window)."""
        q = self._queue
        if len(q) < self._batch_size or self._c.inflight >= self._window:
            return None
        batch = q.pop_batch(self._batch_size, self._busy if self._per_client else None)
        if not batch:
            return None
        self._on_popped()
        return self._take(batch)

    async def _deliver(self, req: Request, batch: list[Entry], keys: set[str] | None) -> None:
        """Send one request to its end, then, while full batches wait, the next ones."""
        while True:
            await self._deliver_one(req, batch, keys)
            taken = self._next()
            if taken is None:
                return
            req, batch, keys = taken

    async def _deliver_one(self, req: Request, batch: list[Entry], keys: set[str] | None) -> None:
        c = self._c
        verdict = None
        try:
            verdict = await self._attempts(req)
        except Exception as exc:  # a bug, not an HTTP outcome: count the events failed, keep going
            log.exception("webhook %s: delivery error", self.name)
            self._c.record_error(f"internal error: {exc!r}")
            verdict = FAIL
        finally:
            n = req.count
            c.inflight -= 1
            c.inflight_events -= n
            if verdict == SUCCESS:
                c.success += n
                created = created_ms(batch[0][0])
                if created is not None:
                    c.delivery_seconds.observe(max(0.0, time.time() - created / 1000.0), n)
            elif verdict == FAIL:
                c.failed += n
            elif verdict == EXHAUSTED:
                c.dropped[EXHAUSTED] += n
            else:  # cancelled by close()
                c.dropped["stopped"] += n
            if keys:
                self._busy -= keys
            self._queue.done(batch)
            self._progress.set()
            if self._wake_on_done:
                self.wake()

    async def _attempts(self, req: Request) -> str:
        """Send until success, a non-retriable answer, or the retry budget is spent."""
        assert self._client is not None
        attempt = 0
        while True:
            async with self._pool:
                out = await send_once(self._client, req, self._builder.attempt_headers(req))
            c = self._c
            c.requests += 1
            c.outcomes[out.kind] += 1
            c.request_seconds.observe(out.latency)
            verdict = classify(out, self._retry_on)
            if verdict == SUCCESS:
                self._note_success()
                return SUCCESS
            self._note_error(describe(req, out))
            if verdict == FAIL:
                return FAIL
            if attempt >= self._max_retries:
                return EXHAUSTED
            delay = backoff_delay(attempt, self._backoff[0], self._backoff[1], out)
            attempt += 1
            c.retried += req.count
            await asyncio.sleep(delay)

    def _note_error(self, message: str) -> None:
        self._c.record_error(message)
        if not self._failing:
            self._failing = True
            log.warning("webhook %s: %s", self.name, message)

    def _note_success(self) -> None:
        if self._failing:
            self._failing = False
            log.info("webhook %s: delivering again", self.name)
