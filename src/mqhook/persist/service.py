"""The session store on the event loop: restore at start-up, a batch every ``FLUSH_INTERVAL``, a
last one at shutdown.

Every ``FLUSH_INTERVAL`` the loop collects the broker journal's change records (what changed since
the last batch: cost proportional to the changes, see ``mqhook.broker.journal``) and hands them to
one worker thread, which serialises and writes them in one SQLite transaction. While a batch is being
written, changes accumulate in the journal and go in the next one. So a crash (SIGKILL, power cut
aside) loses at most the changes of the batch being written and of the interval before it; a clean
stop (``flush`` after the connections are closed, then ``close``) loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mqhook.broker.connect import NEVER_EXPIRES
from mqhook.persist.store import SessionStore, wall_offset

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker
    from mqhook.broker.journal import Journal

__all__ = ["FLUSH_INTERVAL", "DurableSessions"]

log = logging.getLogger("mqhook.persist")

FLUSH_INTERVAL = 0.05  # seconds between batches


class DurableSessions:
    def __init__(self, broker: Broker, data_dir: str, interval: float = FLUSH_INTERVAL) -> None:
        assert broker.journal is not None, "durable_sessions is off"
        self.broker = broker
        self.journal: Journal = broker.journal
        self.store = SessionStore(data_dir)
        self.interval = interval
        self.stats = broker.stats.durable
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqhook-sessions")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[Any] | None = None
        self._closed = False

    def _run(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        assert self._loop is not None
        return self._loop.run_in_executor(self._pool, fn, *args)

    async def restore(self) -> None:
        """Open the store and put its sessions and retained messages back into the broker (before the
        listeners accept). Raises ``SessionStoreError`` if it cannot be opened or read."""
        loop = self._loop = asyncio.get_running_loop()
        await self._run(self.store.open)
        clock = self.broker.clock
        offset = wall_offset(clock.time())
        sessions, retained = await self._run(self.store.load, offset)
        now = time.time()
        gone: list[tuple[Any, ...]] = []
        broker = self.broker
        for msg in retained:
            if msg.expiry_at is not None and msg.expiry_at <= clock.time():
                gone.append(("unretain", msg.topic))
                continue
            broker.restore_retained(msg)
        expired = 0
        for s in sessions:
            expires_in: float | None
            if s.expiry_interval == NEVER_EXPIRES:
                expires_in = None
            elif s.expires_at is None:  # connected when the broker stopped: its interval starts now
                expires_in = float(s.expiry_interval)
            else:
                expires_in = s.expires_at - now
            if expires_in is not None and expires_in <= 0:
                expired += 1
                if s.will is None:
                    gone.append(("drop", s.client_id))
                    continue
                # Restored only to end at once, which publishes its will [MQTT-3.1.3-9].
            broker.restore_session(
                s.client_id,
                s.expiry_interval,
                expires_in,
                s.subscriptions,
                s.queue,
                s.first_seq,
                s.inflight,
                s.awaiting_rel,
                s.will,
                0.0 if s.will_at is None else s.will_at - now,
            )
        if gone:
            await self._run(self.store.apply, gone, offset)
        self.stats["restored_sessions"] = len(sessions) - expired
        self.stats["restored_retained"] = len(broker.retained)
        self.stats["expired_at_restore"] = expired
        log.info(
            "durable sessions: restored %d sessions and %d retained messages from %s (%d sessions had expired)",
            len(sessions) - expired,
            len(broker.retained),
            self.store.path,
            expired,
        )
        self._timer = loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._closed:
            return
        if self._writing is None:
            self._write()
        assert self._loop is not None
        self._timer = self._loop.call_later(self.interval, self._tick)

    def _write(self) -> asyncio.Future[Any] | None:
        """Collect and hand one batch to the worker; None if nothing changed."""
        ops = self.journal.collect()
        if not ops:
            return None
        offset = wall_offset(self.broker.clock.time())
        self.journal.writing = len(ops)
        fut = self._writing = self._run(self.store.apply, ops, offset)
        fut.add_done_callback(lambda f: self._written(f, len(ops)))
        return fut

    def _written(self, fut: asyncio.Future[Any], n: int) -> None:
        self._writing = None
        self.journal.writing = 0
        exc = fut.exception() if not fut.cancelled() else None
        if exc is not None or fut.cancelled():
            self.stats["flush_errors"] += 1
            log.error("durable sessions: writing %d changes to %s failed: %s", n, self.store.path, exc)
            self.journal.resync()  # everything is written again, from scratch, next time
            return
        self.stats["flushes"] += 1
        self.stats["changes_flushed"] += n

    async def flush(self) -> None:
        """Write everything changed so far (after the batch in progress, if any)."""
        if self._loop is None:
            return
        while self._writing is not None:
            await asyncio.wait([self._writing])
        fut = self._write()
        if fut is not None:
            await asyncio.wait([fut])

    async def close(self) -> None:
        """The last batch, then the store is closed (at shutdown, after the connections are)."""
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            await self.flush()
        finally:
            self._closed = True
            if self._loop is not None:
                await self._run(self.store.close)
            self._pool.shutdown(wait=True)
