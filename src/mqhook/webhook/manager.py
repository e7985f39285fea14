"""``WebhookManager``: every webhook by name, their lifecycle, live changes, and the Test button.

Only enabled webhooks are ``consumers`` of events and get started; disabled ones keep their
config, their counters and whatever they had queued (``/api/v1/stats`` lists them). ``test``
sends one real sample request for a webhook config, saved or not (``probe.probe``).

Live changes (the REST API's create, replace, delete, enable, disable) apply at once. After each,
``on_change`` (set by the composition root to the event router's ``set_consumers``) is called
in the same loop step, so no event is routed to a webhook that is gone or missed by a new one:

- ``add``: the next matching event goes to the new webhook;
- ``replace``: a new ``Webhook`` takes over the old one's counters and queued events (as many as
  its bounds allow, ``Webhook.hand_over``); the old one's requests in flight finish on the old
  settings for up to ``drain_timeout`` s in the background and are counted on the new one;
- ``remove``: the webhook takes no more events and delivers what it has queued for up to
  ``drain_timeout`` s in the background; the rest is counted ``stopped`` (a durable webhook's
  spool files are deleted with it; its dead letters stay on disk for ``mqhook deadletters``).

Durable webhooks keep their spool across ``replace`` (the new ``Webhook`` gets the same ``Spool``
and ``DeadLetters`` objects: one owner of the files at a time) and across restarts (``data_dir``).

Each webhook has a ``source``: ``"config"`` (the config file, read-only over the API) or ``"api"``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mqhook.errors import ConfigError
from mqhook.webhook.model import WebhookConfig
from mqhook.webhook.probe import TestResult, probe
from mqhook.webhook.webhook import Webhook

__all__ = ["CONFIG", "WebhookManager"]

log = logging.getLogger("mqhook.webhook")

CONFIG = "config"
API = "api"
DRAIN_SECONDS = 5.0


class WebhookManager:
    """Every webhook, by name (in the order they were added)."""

    def __init__(
        self,
        configs: Iterable[WebhookConfig],
        node: str,
        drain_timeout: float = DRAIN_SECONDS,
        data_dir: str | None = None,
    ) -> None:
        self.node = node
        self.data_dir = data_dir
        self.drain_timeout = drain_timeout
        self.on_change: Callable[[], None] | None = None
        # The broker's SyncBarrier (set by the composition root): fsync = "always" spools hold it.
        self.barrier: Any = None
        self._hooks: dict[str, Webhook] = {}
        self._sources: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Webhooks replaced or removed and still finishing (retire / close), with their tasks.
        self._leaving: dict[asyncio.Task[None], tuple[Webhook, bool]] = {}
        for i, cfg in enumerate(configs):
            if cfg.name in self._hooks:
                raise ConfigError(f"$.webhooks[{i}].name: {cfg.name!r} is invalid; expected a name not used before")
            self._hooks[cfg.name] = Webhook(cfg, data_dir=data_dir)
            self._sources[cfg.name] = CONFIG

    @property
    def consumers(self) -> list[Webhook]:
        """The enabled webhooks: what the events layer delivers to."""
        return [w for w in self._hooks.values() if w.config.enable]

    def get(self, name: str) -> Webhook | None:
        return self._hooks.get(name)

    def source(self, name: str) -> str:
        return self._sources[name]

    def __iter__(self) -> Iterator[Webhook]:
        return iter(self._hooks.values())

    def __len__(self) -> int:
        return len(self._hooks)

    def __contains__(self, name: object) -> bool:
        return name in self._hooks

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        for hook in self.consumers:
            self._start(hook)

    def _start(self, hook: Webhook) -> None:
        assert self._loop is not None
        if hook.spool is not None:
            hook.spool.barrier = self.barrier
        hook.start(self._loop)

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Close every webhook concurrently, each with the same drain budget; webhooks still leaving
        after a change get the same budget from now."""
        leaving = [w.retire(drain_timeout) if out else w.close(drain_timeout) for w, out in self._leaving.values()]
        await asyncio.gather(*(w.close(drain_timeout) for w in self._hooks.values()), *leaving)
        await asyncio.gather(*self._leaving, return_exceptions=True)

    # -- live changes -----------------------------------------------------------------------------

    def add(self, cfg: WebhookConfig, source: str = API) -> Webhook:
        """A new webhook, started if enabled; ConfigError if the name is taken."""
        if cfg.name in self._hooks:
            raise ConfigError(f"name: {cfg.name!r} is already the name of a webhook")
        hook = Webhook(cfg, data_dir=self.data_dir)
        self._hooks[cfg.name] = hook
        self._sources[cfg.name] = source
        if cfg.enable and self._loop is not None:
            self._start(hook)
        self._changed()
        return hook

    def replace(self, cfg: WebhookConfig) -> Webhook:
        """The webhook ``cfg.name`` with new settings (see the module docstring); KeyError if unknown."""
        old = self._hooks[cfg.name]
        new = Webhook(
            cfg,
            data_dir=self.data_dir,
            spool=old.spool if cfg.durable else None,
            dead=old.dead if cfg.dead_letter else None,
        )
        self._hooks[cfg.name] = new
        self._changed()  # the old one is no longer a consumer: nothing more arrives there
        moved = old.hand_over(new)
        if cfg.enable and self._loop is not None:
            self._start(new)
        log.info("webhook %s changed (%d queued events kept)", cfg.name, moved)
        self._in_background(old, True)
        return new

    def remove(self, name: str) -> None:
        """Delete a webhook (see the module docstring); KeyError if unknown."""
        old = self._hooks.pop(name)
        del self._sources[name]
        self._changed()
        self._in_background(old, False)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _in_background(self, hook: Webhook, handed_over: bool) -> None:
        """Let ``hook`` finish (``retire`` after a hand-over, else ``close``) without waiting for it."""
        if self._loop is None:
            return
        work = hook.retire(self.drain_timeout) if handed_over else hook.close(self.drain_timeout, discard=True)
        task = self._loop.create_task(work)
        self._leaving[task] = (hook, handed_over)
        task.add_done_callback(lambda t: self._leaving.pop(t, None))

    # -- reading ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: hook.stats() for name, hook in self._hooks.items()}

    async def test(self, cfg: WebhookConfig) -> TestResult:
        """Send one real sample request per ``cfg`` (the Test button); errors are in the result."""
        return await probe(cfg, self.node)
