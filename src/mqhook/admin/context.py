"""``AdminContext``: what the admin routes work on, built once by the composition root.

It holds the broker, the webhook manager, the store and its worker thread, the authenticator,
the rates sampled every second for the dashboard, and the API's own bookkeeping of webhooks
(when each API webhook was created and changed, and the baselines of ``metrics/reset``).

The admin state shared by workers (``mqhook run --workers N``): every worker opens the same store.
A change made through one worker's API is written to the store, applied on that worker, then
announced (``announce(store id)``, which the composition root wires to the cluster's control
messages: this module knows nothing of NATS). A worker that hears an announcement for its store
(``remote_change``) runs ``sync``: it reads the webhooks, tokens and API keys back from the store
and applies what differs, webhooks through the same ``WebhookManager`` calls as the API (replace,
with its queued-events handover; add; remove, which drains). While shared, ``sync`` also runs every
``SYNC_EVERY`` seconds, so an announcement lost while NATS was down is made up for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from mqhook.admin.auth import Auth
from mqhook.admin.store import Store
from mqhook.schema import dec_hook
from mqhook.webhook.manager import API, CONFIG, WebhookManager
from mqhook.webhook.model import WebhookConfig

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker

__all__ = ["CTX", "AdminContext", "Rates"]

log = logging.getLogger("mqhook.admin")

RATE_WINDOW = 10  # seconds over which rates are averaged
SAMPLE_EVERY = 1.0
# Counters a metrics/reset starts again from zero (in the API's view; Prometheus keeps counting).
RESETTABLE = ("matched", "success", "failed", "retried", "requests")
SYNC_EVERY = 10.0  # seconds between two syncs from the shared store (announcements do it at once)


class Rates:
    """Per-second rates of named counters over the last ``window`` samples."""

    def __init__(self, window: int = RATE_WINDOW) -> None:
        self._samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=window + 1)

    def sample(self, now: float, values: dict[str, float]) -> None:
        self._samples.append((now, values))

    def rate(self, key: str) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        if t1 <= t0 or key not in last:
            return 0.0
        return round(max(0.0, last[key] - first.get(key, 0.0)) / (t1 - t0), 3)


class AdminContext:
    """See the module docstring; the routes reach it as ``request.app[CTX]``."""

    def __init__(
        self,
        broker: Broker,
        webhooks: WebhookManager,
        store: Store,
        token_expiry: float,
        node: str,
        metrics_auth: bool = False,
    ) -> None:
        self.broker = broker
        self.webhooks = webhooks
        self.store = store
        self.node = node
        self.metrics_auth = metrics_auth
        self.started_loop_time = 0.0  # the loop's clock at start
        # One worker thread for the store: the loop never waits for a disk sync, and SQLite is
        # only ever used from one thread at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqhook-store")
        self.auth = Auth(store, self.run, token_expiry)
        self.rates = Rates()
        self.times: dict[str, tuple[float, float]] = {}  # API webhook -> (created_at, updated_at)
        self.baselines: dict[str, tuple[float, dict[str, Any]]] = {}  # webhook -> (reset at, counters then)
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Held by an API change of a webhook (store write, then the manager) and by ``sync``.
        self.lock = asyncio.Lock()
        # Set by the composition root when the store is shared (--workers): tells the other workers.
        self.announce: Callable[[bytes], None] | None = None
        # Set by the composition root when clustered: the "cluster" section of /api/v1/stats.
        self.cluster_stats: Callable[[], dict[str, Any]] | None = None
        self.auth.on_change = self.changed
        self._sync_wanted = False
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_timer: asyncio.TimerHandle | None = None
        self.syncs = 0  # syncs run (tests)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the store's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- start and stop --------------------------------------------------------------------------------

    def load_webhooks(self) -> None:
        """Add the webhooks stored by the API to the manager (before it starts). A stored one whose
        name the config file now uses, or that no longer validates, is reported and left out."""
        for name, config_json, created, updated in self.store.webhooks():
            if name in self.webhooks:
                log.warning(
                    "webhook %r made over the API is shadowed by the config file's webhook of that name "
                    "(rename one; the stored one stays in %s)",
                    name,
                    self.store.path,
                )
                continue
            try:
                cfg = msgspec.json.decode(config_json, type=WebhookConfig, strict=True, dec_hook=dec_hook)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.error("webhook %r stored in %s is not valid any more, not started: %s", name, self.store.path, exc)
                continue
            self.webhooks.add(cfg, source="api")
            self.times[name] = (created, updated)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.started_loop_time = loop.time()
        self._sample()
        if self.announce is not None:
            self._sync_timer = loop.call_later(SYNC_EVERY, self._periodic_sync)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        if self._sync_task is not None:
            self._sync_task.cancel()
        self._executor.shutdown(wait=True)
        self.store.close()

    def _sample(self) -> None:
        assert self._loop is not None
        stats = self.broker.stats
        values: dict[str, float] = {
            "in": float(sum(stats.messages_received)),
            "out": float(sum(stats.messages_sent)),
        }
        for hook in self.webhooks:
            values["matched:" + hook.name] = hook.matched
            values["success:" + hook.name] = hook.success
        self.rates.sample(self._loop.time(), values)
        self._timer = self._loop.call_later(SAMPLE_EVERY, self._sample)

    # -- the admin state shared by workers ------------------------------------------------------------

    def changed(self) -> None:
        """A change was committed to the store and applied here: tell the other workers."""
        if self.announce is not None:
            self.announce(self.store.id.encode())

    def remote_change(self, data: bytes) -> None:
        """Another node announced a change of the store whose id is ``data``: sync if it is ours.
        Announcements that come while a sync runs are folded into one more sync after it."""
        if data.decode("utf-8", "replace") != self.store.id:
            return  # another deployment's store (nodes of other machines on the same NATS)
        self._sync_wanted = True
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._syncs(), name="mqhook-admin-sync")

    def _periodic_sync(self) -> None:
        assert self._loop is not None
        self.remote_change(self.store.id.encode())
        self._sync_timer = self._loop.call_later(SYNC_EVERY, self._periodic_sync)

    async def _syncs(self) -> None:
        while self._sync_wanted:
            self._sync_wanted = False
            try:
                await self.sync()
            except Exception:
                log.exception("admin: reading the shared admin state from %s failed", self.store.path)

    def _read_shared(self) -> tuple[list[Any], list[Any], list[Any]]:  # on the store's thread
        return self.store.webhooks(), self.store.live_tokens(time.time()), self.store.api_keys()

    async def sync(self) -> None:
        """Make this worker's tokens, API keys and API webhooks those of the store."""
        async with self.lock, self.auth.lock:
            rows, tokens, keys = await self.run(self._read_shared)
            self.auth.reload(tokens, keys)
            self._apply_webhooks(rows)
            self.syncs += 1

    def _apply_webhooks(self, rows: list[Any]) -> None:
        stored: set[str] = set()
        for name, config_json, created, updated in rows:
            if name in self.webhooks and self.webhooks.source(name) == CONFIG:
                continue  # shadowed by the config file's webhook (logged at start)
            stored.add(name)
            if name in self.webhooks and self.times.get(name, (None, None))[1] == updated:
                continue  # as this worker last wrote or read it
            try:
                cfg = msgspec.json.decode(config_json, type=WebhookConfig, strict=True, dec_hook=dec_hook)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.error("webhook %r stored in %s is not valid, not applied: %s", name, self.store.path, exc)
                continue
            if name in self.webhooks:
                self.webhooks.replace(cfg)
                log.info("webhook %r changed by another worker: applied", name)
            else:
                self.forget(name)
                self.webhooks.add(cfg, source=API)
                log.info("webhook %r created by another worker: started", name)
            self.times[name] = (created, updated)
        for hook in list(self.webhooks):
            name = hook.name
            if name not in stored and self.webhooks.source(name) == API:
                self.webhooks.remove(name)
                self.forget(name)
                log.info("webhook %r deleted by another worker: stopped", name)

    # -- webhook views -----------------------------------------------------------------------------------

    def metrics(self, name: str) -> dict[str, Any]:
        """A webhook's counters as the API shows them: since its last metrics/reset, with rates."""
        hook = self.webhooks.get(name)
        assert hook is not None
        out = hook.stats()
        reset_at, base = self.baselines.get(name, (None, None))
        if base is not None:
            for key in RESETTABLE:
                out[key] -= base[key]
            out["dropped"] = {k: v - base["dropped"].get(k, 0) for k, v in out["dropped"].items()}
        out["rate"] = self.rates.rate("matched:" + name)
        out["rate_success"] = self.rates.rate("success:" + name)
        out["reset_at"] = reset_at
        return out

    def reset_metrics(self, name: str) -> None:
        hook = self.webhooks.get(name)
        assert hook is not None
        stats = hook.stats()
        self.baselines[name] = (time.time(), {k: stats[k] for k in (*RESETTABLE, "dropped")})

    def forget(self, name: str) -> None:
        """A webhook was deleted: its name may be used again from zero."""
        self.times.pop(name, None)
        self.baselines.pop(name, None)


CTX = web.AppKey("admin", AdminContext)
