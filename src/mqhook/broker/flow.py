"""Backpressure: who cannot keep up with publishers, and the publishers waiting for them.

This module owns the broker's flow control between MQTT publishers and what consumes their
messages more slowly than they arrive. Two kinds of *holder* ask publishers to wait:

- a webhook with ``overflow = "backpressure"`` over its high water (``mqhook.events`` holds and
  releases for it);
- a QoS 1/2 subscriber whose session has a window's worth of messages queued behind its inflight
  window (``broker.session``): its publishers wait while it catches up, instead of filling its
  queue until it drops. It holds for at most ``mqtt.flow_control_timeout``: a subscriber still
  behind after that is left to its bounded queue, so one slow subscriber cannot stall its
  publishers' other subscribers for longer.

Only publishers whose messages feed a holder wait. While one PUBLISH is handled, every holder it
feeds is noted in ``fed`` (None when it fed none: the common case costs one store and one read);
the connection then holds what its client sends next until those holders have released
(``on_relief``). Nothing is dropped: held packets wait in order (``broker.connection``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

__all__ = ["Backpressure"]

log = logging.getLogger("mqhook.broker")


class Backpressure:
    """The holders of publishers' pause, and the relief callbacks waiting on them."""

    __slots__ = ("_holders", "_waiters", "active", "fed")

    def __init__(self) -> None:
        self.active = False  # someone holds
        self.fed: list[object] | None = None  # the holders the PUBLISH being handled fed
        self._holders: set[object] = set()
        self._waiters: list[tuple[set[object], Callable[[], None]]] = []

    def hold(self, holder: object) -> None:
        """``holder`` wants the publishers feeding it paused until it calls ``release``."""
        self._holders.add(holder)
        self.active = True

    def holding(self, holder: object) -> bool:
        return holder in self._holders

    def note_fed(self, holder: object) -> None:
        """The PUBLISH being handled put a message or an event into ``holder``, which holds."""
        fed = self.fed
        if fed is None:
            self.fed = [holder]
        elif holder not in fed:
            fed.append(holder)

    def release(self, holder: object) -> None:
        """``holder`` has caught up; call back every waiter that no longer waits for anyone."""
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

    def on_relief(self, callback: Callable[[], None], holders: Iterable[object] | None = None) -> None:
        """Call ``callback`` once each of ``holders`` (default: every holder of this moment) that
        holds now has released; at once if none does."""
        pending = set(self._holders) if holders is None else {h for h in holders if h in self._holders}
        if not pending:
            callback()
            return
        self._waiters.append((pending, callback))


class SyncBarrier:
    """Output that must wait for a durable commit: a durable webhook with ``fsync = "always"`` holds
    the barrier from its first event of a loop turn until its sync is done, and the transports flush
    nothing meanwhile (they ``wait``), so no PUBACK/PUBREC leaves before the event it acknowledges
    is on disk. Free (``pending`` 0) unless such a webhook exists: one attribute read per flush."""

    __slots__ = ("_waiting", "pending")

    def __init__(self) -> None:
        self.pending = 0  # commits due before output may leave
        self._waiting: list[Callable[[], None]] = []

    def hold(self) -> None:
        self.pending += 1

    def wait(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once no commit is pending (the caller checked ``pending`` first)."""
        self._waiting.append(callback)

    def release(self) -> None:
        """A commit is done: when none is left, the waiting output goes, in the order it waited."""
        self.pending -= 1
        if self.pending <= 0:
            self.pending = 0
            waiting, self._waiting = self._waiting, []
            for callback in waiting:
                callback()
