"""How many MQTT connections this process can hold: file descriptors and ``mqtt.max_connections``.

Every MQTT connection is a file descriptor. When a process runs out of them, libuv accepts the
next connection and closes it at once, telling no one (its EMFILE trick keeps the listener from
spinning): the client sees a closed socket and nothing is logged or counted, and the admin server,
the webhooks' HTTP pools and the log files fail at the same moment. So mqhook never lets MQTT
connections reach the limit:

- at start-up the soft limit is raised to the hard limit (``raise_open_file_limit``);
- ``mqtt.max_connections = 0`` (the default) means that limit minus a reserve (``auto_max_connections``),
  and a configured value above it is reported;
- a CONNECT beyond ``max_connections`` is refused with CONNACK 0x97 (3 in 3.1.1) and counted
  (``broker.connection``), and its socket closes.
"""

from __future__ import annotations

import logging
import resource

__all__ = ["RESERVE_MAX", "RESERVE_MIN", "auto_max_connections", "raise_open_file_limit"]

log = logging.getLogger("mqhook.server")

RESERVE_MIN = 32  # descriptors kept for everything but MQTT connections, at the least ...
RESERVE_MAX = 4096  # ... and at the most; in between, an eighth of the limit


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one where allowed; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # "unlimited" is refused as a soft value: take what a busy server needs
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return hard if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open file limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


def auto_max_connections(open_files: int) -> int:
    """``open_files`` minus the reserve for the admin server, webhooks, logs and refusals in flight."""
    reserve = min(RESERVE_MAX, max(RESERVE_MIN, open_files // 8))
    return max(1, open_files - reserve)
