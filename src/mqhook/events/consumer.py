"""The contract between the events layer and whatever consumes events (the webhooks).

This module owns ``EventConsumer``, the one interface ``EventRouter`` talks to. A consumer is one
configured webhook: which EMQX event names it wants, which topic filters apply to the five
message events, how payloads are encoded, and a non-blocking ``put`` of one event: its JSON object
(the shapes of ``mqhook.events.model``, no ``metadata``) and the client id it is about, the
per-client ordering key. The same bytes go to every consumer that wants the event. Consumers own
their queue, overflow policy and drop counting; the router only routes and writes events.

Topic filters follow EMQX's rule ``FROM`` for message events: ``"#"`` matches every topic except
those starting with ``$`` [MQTT-4.7.2-1], as ``FROM "#"`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["EventConsumer"]


class EventConsumer(Protocol):
    name: str  # webhook name
    events: frozenset[str]  # EMQX event names it wants
    topics: tuple[str, ...]  # topic filters for the five message events (default ("#",))
    payload_encoding: str  # "plain" | "base64"
    saturated: bool
    """True while it wants publishers paused (overflow = "backpressure", queue over its high water).
    Read after every put: a plain attribute."""

    def put(self, raw: bytes, clientid: str) -> bool:
        """Non-blocking; False if dropped by its overflow policy (the consumer counts that itself)."""
        ...

    def on_relief(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when no longer saturated."""
        ...
