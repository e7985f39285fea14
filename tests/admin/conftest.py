"""Fixtures of the admin REST API tests (tests/conftest.py provides the brokers).

Names are distinct from tests/conftest.py's (``broker``, ``default_broker``, ``uid``) and from the
integration suite's (``rx``, ``clients``, ``raw``), which do not apply here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.pahoc import Clients
from integration.receiver import Receivers


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    """``receivers(statuses=..., default_status=..., gate=...)`` -> a started webhook Receiver."""
    yield from Receivers.fixture()


@pytest.fixture
def mqtt_clients() -> Iterator[Clients]:
    """``mqtt_clients(broker, client_id, protocol=V5, clean=True, ...)`` -> a connected paho client."""
    reg = Clients()
    yield reg
    reg.close_all()


@pytest.fixture
def nid(uid: str) -> str:
    """``uid`` made a valid webhook / client / user name: it starts with a letter (conftest's ``uid``
    keeps the last 40 characters of the test id, which may start with '-')."""
    return "t" + uid.lstrip("-_")
