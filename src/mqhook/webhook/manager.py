"""``WebhookManager``: every configured webhook by name, their lifecycle, and the Test button.

Only enabled webhooks are ``consumers`` of events and get started; disabled ones keep their
config and zero counters (``/api/v1/stats`` lists them). ``test`` sends one real sample request
for a webhook config, saved or not (``probe.probe``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

from mqhook.errors import ConfigError
from mqhook.webhook.model import WebhookConfig
from mqhook.webhook.probe import TestResult, probe
from mqhook.webhook.webhook import Webhook

__all__ = ["WebhookManager"]


class WebhookManager:
    """Every configured webhook, by name."""

    def __init__(self, configs: Iterable[WebhookConfig], node: str) -> None:
        self.node = node
        self._hooks: dict[str, Webhook] = {}
        for i, cfg in enumerate(configs):
            if cfg.name in self._hooks:
                raise ConfigError(f"$.webhooks[{i}].name: {cfg.name!r} is invalid; expected a name not used before")
            self._hooks[cfg.name] = Webhook(cfg)

    @property
    def consumers(self) -> list[Webhook]:
        """The enabled webhooks: what the events layer delivers to."""
        return [w for w in self._hooks.values() if w.config.enable]

    def get(self, name: str) -> Webhook | None:
        return self._hooks.get(name)

    def __iter__(self) -> Iterator[Webhook]:
        return iter(self._hooks.values())

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        for hook in self.consumers:
            hook.start(loop)

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Close every webhook concurrently, each with the same drain budget."""
        await asyncio.gather(*(w.close(drain_timeout) for w in self._hooks.values()))

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: hook.stats() for name, hook in self._hooks.items()}

    async def test(self, cfg: WebhookConfig) -> TestResult:
        """Send one real sample request per ``cfg`` (the Test button); errors are in the result."""
        return await probe(cfg, self.node)
