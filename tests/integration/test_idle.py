"""Idle connections: a socket that never sends CONNECT is closed after idle_timeout; keepalive 0 is never checked."""

from __future__ import annotations

import time

import pytest

from .rawmqtt import connect_packet, parse_connack

CONFIG = "[mqtt]\nidle_timeout = 0.5\n"


def test_socket_without_connect_is_closed_after_idle_timeout(broker, raw):
    b = broker(CONFIG)
    c = raw(b, version=4)
    t0 = time.monotonic()
    assert c.wait_closed(3.0) == []
    assert 0.4 <= time.monotonic() - t0 <= 3.0


@pytest.mark.parametrize("version", [4, 5])
def test_keepalive_zero_turns_the_check_off(broker, raw, uid, version):
    b = broker(CONFIG)
    c = raw(b, version=version)
    c.send(connect_packet(uid, version=version, keepalive=0))
    assert parse_connack(c.expect(2), version).rc == 0
    time.sleep(1.5)  # three idle timeouts of silence: nothing may close the connection
    c.ping(2)
    assert b.stats()["disconnects"]["keepalive_timeout"] == 0
