"""The contract between the event hooks and whatever consumes events (the webhook layer).

This module owns ``EventSink``, the one interface ``EventHooks`` talks to. A sink
is one configured webhook: which EMQX event names it wants, which topic filters
apply to the five message events, how payloads are encoded, and a non-blocking
``put`` of one event: its JSON object (the shapes of ``mqhook.events.model``, no
``metadata``) and the client id it is about, the per-client ordering key. The same
bytes go to every sink that wants the event. Sinks own their queue, overflow policy and drop counting; the hooks
only route and build events.

Topic filters follow EMQX's rule ``FROM`` for message events: ``"#"`` matches
every topic except those starting with ``$`` [MQTT-4.7.2-1], as ``FROM "#"`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["EventSink"]


class EventSink(Protocol):
    name: str  # webhook name
    events: frozenset[str]  # EMQX event names it wants
    topics: tuple[str, ...]  # topic filters for the five message events (default ("#",))
    payload_encoding: str  # "plain" | "base64"

    def put(self, raw: bytes, clientid: str) -> bool:
        """Non-blocking; False if dropped by its overflow policy (the sink counts that itself)."""
        ...

    @property
    def saturated(self) -> bool:
        """True while it wants publishers paused (overflow="backpressure", queue over high water).
        Read after every put: a plain attribute is the cheapest way to provide it."""
        ...

    def on_relief(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when no longer saturated."""
        ...
