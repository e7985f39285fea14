"""Per-webhook counters: plain ints bumped in place, no locks (everything runs on one loop).

Names follow EMQX's action metrics (``matched``, ``success``, ``failed``, ``retried``,
``dropped.<reason>``, ``queuing``, ``inflight``). Counts are in events, except ``inflight``
and ``requests`` which count HTTP requests (a batch is one request). The invariant, as in EMQX:
``matched == success + failed + sum(dropped) + queuing + inflight_events``.

Drop reasons (EMQX adds ``expired``/``resource_stopped``; ours say what happened):

- ``queue_full``: the queue was at ``max_queued_events`` or ``max_buffer_bytes``;
- ``retries_exhausted``: still failing with a retriable outcome after ``max_retries`` retries
  (memory webhooks with ``overflow`` ``drop_oldest`` or ``drop_new``; backpressure retries on);
- ``expired``: a durable webhook's event still failing when older than ``max_event_age``;
- ``request_refused``: the request could not be built (a header rendered CR/LF/NUL), not sent;
- ``stopped``: the webhook was closed before the event could be delivered (a memory webhook; a
  durable one keeps such events in its spool).

For Prometheus (``mqhook.metrics`` reads these at scrape time): ``outcomes`` counts HTTP attempts
by outcome (``OUTCOMES``), and three ``Histogram``s are updated once per request, never per event:
``request_seconds`` (one attempt's duration), ``batch_events`` (events per request) and
``delivery_seconds`` (event created -> 2xx, weighted by the request's events; see ``webhook.Webhook``).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from typing import Any

DROP_REASONS = ("queue_full", "retries_exhausted", "expired", "request_refused", "stopped")
# One HTTP attempt's outcome: the status class, or why there was no status. ``other_status`` is a
# status outside 200-599 (1xx is never final: the client skips interim replies; a broken server may send 600-999).
OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "other_status", "timeout", "connection_error")
REQUEST_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DELIVERY_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_EVENTS_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
DELIVERIES_KEPT = 100
# One HTTP attempt, for the deliveries log: (unix time, events, attempt (0 = first), outcome, status, error, seconds)
Delivery = tuple[float, int, int, str, "int | None", "str | None", float]


class Histogram:
    """Fixed buckets of plain ints (not cumulative; the last one is +Inf) and a sum.

    ``observe`` is one bisect and two additions; a value equal to a bound falls in that bound's
    bucket (Prometheus ``le``). The exporter makes the counts cumulative at scrape time.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, n: int = 1) -> None:
        """Record ``n`` observations of ``value``."""
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n

    @property
    def count(self) -> int:
        return sum(self.counts)


class Counters:
    """The numbers one webhook exposes; subclassed by ``Webhook`` so they read ``webhook.success``."""

    __slots__ = (
        "batch_events",
        "deliveries",
        "delivery_seconds",
        "dropped",
        "failed",
        "inflight",
        "inflight_events",
        "last_error",
        "last_error_at",
        "matched",
        "outcomes",
        "request_seconds",
        "requests",
        "retried",
        "success",
    )

    def __init__(self) -> None:
        self.matched = 0  # events put (accepted or not)
        self.success = 0  # events in a request answered 2xx
        self.failed = 0  # events in a request answered with a status not in retry_on
        self.retried = 0  # events re-sent: one per event per retry attempt
        self.requests = 0  # HTTP attempts made (first tries and retries)
        self.inflight = 0  # requests taken from the queue and not finished (incl. waiting to retry)
        self.inflight_events = 0  # events in those requests
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)  # HTTP attempts; sums to ``requests``
        self.request_seconds = Histogram(REQUEST_SECONDS_BUCKETS)
        self.batch_events = Histogram(BATCH_EVENTS_BUCKETS)
        self.delivery_seconds = Histogram(DELIVERY_SECONDS_BUCKETS)
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # unix seconds
        self.deliveries: deque[Delivery] = deque(maxlen=DELIVERIES_KEPT)  # the last attempts, oldest first

    def take_over(self, old: Counters) -> None:
        """Continue ``old``'s numbers (a webhook replaced by one with new settings): every counter,
        the histograms and the deliveries log; the requests ``old`` still has in flight are counted
        here when they finish (``Webhook.hand_over``)."""
        for name in ("matched", "success", "failed", "retried", "requests", "inflight", "inflight_events"):
            setattr(self, name, getattr(old, name))
        self.dropped.update(old.dropped)  # in place: the queue holds this dict
        self.outcomes.update(old.outcomes)
        self.request_seconds = old.request_seconds
        self.batch_events = old.batch_events
        self.delivery_seconds = old.delivery_seconds
        self.last_error, self.last_error_at = old.last_error, old.last_error_at
        self.deliveries = old.deliveries

    def record_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = time.time()

    def counters(self, queuing: int, queuing_bytes: int) -> dict[str, Any]:
        """A JSON-ready snapshot; ``queuing``/``queuing_bytes`` come from the queue."""
        return {
            "matched": self.matched,
            "success": self.success,
            "failed": self.failed,
            "retried": self.retried,
            "requests": self.requests,
            "dropped": dict(self.dropped),
            "queuing": queuing,
            "queuing_bytes": queuing_bytes,
            "inflight": self.inflight,
            "inflight_events": self.inflight_events,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }
