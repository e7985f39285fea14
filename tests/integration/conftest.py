"""Client fixtures for the integration tests (the broker fixtures live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .natsserver import NATS_SERVER, SKIP_REASON, start_single
from .pahoc import Clients
from .rawmqtt import RawClient


@pytest.fixture
def clients() -> Iterator[Clients]:
    """``clients(broker, client_id, protocol=V5, clean=True, ...)`` -> connected paho Client."""
    reg = Clients()
    yield reg
    reg.close_all()


class RawFactory:
    def __init__(self) -> None:
        self.all: list[RawClient] = []

    def __call__(self, broker: Any, version: int = 5, **kw: Any) -> RawClient:
        c = RawClient(broker.host, broker.mqtt_port, version=version, **kw)
        self.all.append(c)
        return c

    def close_all(self) -> None:
        for c in self.all:
            c.close()


@pytest.fixture
def raw() -> Iterator[RawFactory]:
    """``raw(broker, version=5, rcvbuf=None)`` -> a RawClient with an open TCP connection."""
    reg = RawFactory()
    yield reg
    reg.close_all()


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One nats-server with JetStream for the tests of a module (tests/integration/natsserver.py)."""
    if NATS_SERVER is None:
        pytest.skip(SKIP_REASON)
    server = start_single(tmp_path_factory.mktemp("nats"))
    try:
        yield server.url
    finally:
        server.terminate()
