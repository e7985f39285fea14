"""Idle connections: a real broker process closes a socket that never sends CONNECT.

When it closes (exactly idle_timeout after accept, however many bytes of an unfinished CONNECT
arrive meanwhile) and that keepalive 0 turns the check off are timing, on the broker's clock:
tests/unit/test_timers.py.
"""

from __future__ import annotations

CONFIG = "[mqtt]\nidle_timeout = 0.5\n"


def test_socket_without_connect_is_closed_after_idle_timeout(broker, raw):
    b = broker(CONFIG)
    c = raw(b, version=4)
    assert c.wait_closed(5.0) == []  # closed without a packet: waited for as a condition, bounded
