"""``Webhook``: one configured webhook as an event sink; ``WebhookManager``: all of them.

A ``Webhook`` satisfies the events layer's ``EventSink`` protocol: ``name``, ``events``,
``topics``, ``payload_encoding``, a non-blocking ``put``, ``saturated`` and ``on_relief``.
``put`` runs on the broker's hot path: it appends the event's JSON (shared by every webhook)
to the bounded queue and, only if the sender sleeps on it, wakes the sender. No logging, no
locks, no per-event objects beyond the queue entry.
It must be called from the thread running the event loop (the broker's only thread).

Counters are plain ints on the webhook (``webhook.success``...; see ``counters.Counters``).
The manager's ``test`` is the Test button (``probe.probe``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from mqhook.errors import ConfigError
from mqhook.webhook.counters import Counters
from mqhook.webhook.dispatcher import Dispatcher
from mqhook.webhook.model import WebhookConfig
from mqhook.webhook.probe import TestResult, probe
from mqhook.webhook.queue import EventQueue, MemoryQueue
from mqhook.webhook.request import RequestBuilder

log = logging.getLogger(__name__)


class Webhook(Counters):
    """One webhook: config, queue, dispatcher and counters."""

    def __init__(self, cfg: WebhookConfig, queue: EventQueue | None = None) -> None:
        super().__init__()
        self.config = cfg
        self.name = cfg.name
        self.events: frozenset[str] = cfg.event_set
        self.topics: tuple[str, ...] = tuple(cfg.topics)
        self.payload_encoding: str = cfg.payload_encoding
        self.rule_id = cfg.rule_id
        self._queue = queue or MemoryQueue(cfg.max_queued_events, cfg.max_buffer_bytes_n, cfg.overflow, self.dropped)
        self._backpressure = cfg.overflow == "backpressure"
        self.saturated = False  # True from when the queue passes 80% of a bound until it falls to 50% of both
        self._relief: list[Callable[[], None]] = []
        self._closed = False
        self._dispatcher = Dispatcher(cfg, self._queue, self, RequestBuilder(cfg), self._popped)

    # -- EventSink -------------------------------------------------------------------------
    def put(self, raw: bytes, clientid: str) -> bool:
        """Queue one event's JSON (non-blocking). False if it was dropped (overflow, or closed)."""
        self.matched += 1
        if self._closed:
            self.dropped["stopped"] += 1
            return False
        q = self._queue
        if not q.put(raw, clientid):
            return False
        d = self._dispatcher
        if d.waiter is not None and len(q) >= d.want:
            d.wake()
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
        if self.saturated and self._queue.under_low_water:
            self.saturated = False
            callbacks, self._relief = self._relief, []
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("webhook %s: on_relief callback failed", self.name)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the sender on ``loop`` (default: the running loop). Events put before are kept."""
        self._dispatcher.start(loop or asyncio.get_running_loop())

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Refuse new events, deliver what can be delivered in ``drain_timeout`` s, drop the rest."""
        self._closed = True
        await self._dispatcher.close(drain_timeout)

    # -- introspection -----------------------------------------------------------------------
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
        return out

    def __repr__(self) -> str:
        return f"<Webhook {self.name} queuing={len(self._queue)} inflight={self.inflight}>"


def _default_node() -> str:
    return "mqhook@" + socket.gethostname()


class WebhookManager:
    """Every configured webhook; only enabled ones are ``sinks`` and get started."""

    def __init__(self, configs: Iterable[WebhookConfig], node: str | None = None) -> None:
        self.node = node or _default_node()
        self._hooks: dict[str, Webhook] = {}
        for i, cfg in enumerate(configs):
            if cfg.name in self._hooks:
                raise ConfigError(f"$.webhooks[{i}].name: {cfg.name!r} is invalid; expected a name not used before")
            self._hooks[cfg.name] = Webhook(cfg)

    @property
    def sinks(self) -> list[Webhook]:
        return [w for w in self._hooks.values() if w.config.enable]

    def get(self, name: str) -> Webhook | None:
        return self._hooks.get(name)

    def __iter__(self) -> Any:
        return iter(self._hooks.values())

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        for hook in self.sinks:
            hook.start(loop)

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Close every webhook concurrently, each with the same drain budget."""
        await asyncio.gather(*(w.close(drain_timeout) for w in self._hooks.values()))

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: hook.stats() for name, hook in self._hooks.items()}

    async def test(self, cfg: WebhookConfig) -> TestResult:
        """Send one real sample request per ``cfg`` (the Test button); errors are in the result."""
        return await probe(cfg, self.node)
