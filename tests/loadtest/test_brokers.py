"""Brokers started by the harness: the listening line, /proc CPU, and a start that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqhook.loadtest.brokers import BrokerStartError, start_mqhook


def test_start_mqhook_knows_its_admin_address_and_cpu() -> None:
    b = start_mqhook()
    try:
        assert b.port and b.admin.startswith("127.0.0.1:")
        assert isinstance(b.admin_json("/api/v1/stats")["connections"], int)
        cpu = b.cpu_seconds()
        assert cpu is not None and cpu > 0
    finally:
        assert b.stop() == 0


def test_a_broker_that_does_not_start_raises_broker_start_error(tmp_path: Path) -> None:
    # a SystemExit (what `mqhook bench` exits with), catchable apart by scripts running many brokers
    with pytest.raises(BrokerStartError, match="did not start"):
        start_mqhook(["--config", str(tmp_path / "missing.toml")], timeout=20.0)
