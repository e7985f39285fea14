"""Per-webhook counters: plain ints bumped in place, no locks (everything runs on one loop).

Names follow EMQX's action metrics (``matched``, ``success``, ``failed``, ``retried``,
``dropped.<reason>``, ``queuing``, ``inflight``). Counts are in events, except ``inflight``
and ``requests`` which count HTTP requests (a batch is one request). The invariant, as in EMQX:
``matched == success + failed + sum(dropped) + queuing + inflight_events``.

Drop reasons (EMQX adds ``expired``/``resource_stopped``; ours say what happened):

- ``queue_full``: the queue was at ``max_queued_events`` or ``max_buffer_bytes``;
- ``retries_exhausted``: still failing with a retriable outcome after ``max_retries`` retries;
- ``request_refused``: the request could not be built (a header rendered CR/LF/NUL), not sent;
- ``stopped``: the webhook was closed before the event could be delivered.
"""

from __future__ import annotations

import time
from typing import Any

DROP_REASONS = ("queue_full", "retries_exhausted", "request_refused", "stopped")


class Counters:
    """The numbers one webhook exposes; subclassed by ``Webhook`` so they read ``webhook.success``."""

    def __init__(self) -> None:
        self.matched = 0  # events put (accepted or not)
        self.success = 0  # events in a request answered 2xx
        self.failed = 0  # events in a request answered with a status not in retry_on
        self.retried = 0  # events re-sent: one per event per retry attempt
        self.requests = 0  # HTTP attempts made (first tries and retries)
        self.inflight = 0  # requests taken from the queue and not finished (incl. waiting to retry)
        self.inflight_events = 0  # events in those requests
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # unix seconds

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
