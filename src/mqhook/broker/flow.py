"""Backpressure: which listeners want publishers paused, and who waits for them to let go.

This module owns the broker's side of flow control between MQTT publishers and slow consumers of
their events. A listener that cannot keep up (a webhook with ``overflow = "backpressure"`` over its
high water) calls ``hold(holder)``, and ``release(holder)`` once it has drained. While anyone holds,
``active`` is True. Only publishers whose messages feed a holder wait: the listener sets ``fed``
when it puts an event into a holder, the connection clears it before each PUBLISH and, if it is
set after, holds what its client sends next and asks ``on_relief`` for a callback, which comes
once every holder of that moment has released. Nothing is dropped (``broker.connection``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["Backpressure"]

log = logging.getLogger("mqhook.broker")


class Backpressure:
    """The holders of publishers' pause, and the relief callbacks waiting on them."""

    __slots__ = ("_holders", "_waiters", "active", "fed")

    def __init__(self) -> None:
        self.active = False
        self.fed = False  # the PUBLISH being handled put an event into a holder: plain attributes
        self._holders: set[object] = set()
        self._waiters: list[tuple[set[object], Callable[[], None]]] = []

    def hold(self, holder: object) -> None:
        """``holder`` wants publishers paused until it calls ``release``."""
        self._holders.add(holder)
        self.active = True

    def holding(self, holder: object) -> bool:
        return holder in self._holders

    @property
    def holders(self) -> frozenset[object]:
        return frozenset(self._holders)

    def release(self, holder: object) -> None:
        """``holder`` has drained; call back every waiter that no longer waits for anyone."""
        if holder not in self._holders:
            return
        self._holders.discard(holder)
        self.active = bool(self._holders)
        ready: list[Callable[[], None]] = []
        waiting: list[tuple[set[object], Callable[[], None]]] = []
        for pending, callback in self._waiters:
            pending.discard(holder)
            if pending:
                waiting.append((pending, callback))
            else:
                ready.append(callback)
        self._waiters = waiting
        for callback in ready:
            try:
                callback()
            except Exception:  # one broken waiter must not keep the others paused
                log.exception("relief callback %r failed", callback)

    def on_relief(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every holder of this moment has released (at once if none holds)."""
        if not self._holders:
            callback()
            return
        self._waiters.append((set(self._holders), callback))
