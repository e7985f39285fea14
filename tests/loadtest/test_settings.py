"""The settings of the brokers `mqhook bench` starts: equal by default, --max-queued / --max-inflight
reach both (real processes: the started mqhook's environment, the started mosquitto's config file),
and the header says what each one has and what differs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqhook.broker.settings import MqttConfig
from mqhook.loadtest import brokers, cli, report
from mqhook.loadtest.brokers import (
    MOSQUITTO_PATHS,
    mosquitto_config,
    mosquitto_settings,
    mqhook_settings,
    settings_differ,
)

DEFAULTS = MqttConfig()
needs_mosquitto = pytest.mark.skipif(
    not any(os.access(p, os.X_OK) for p in MOSQUITTO_PATHS), reason="mosquitto is not installed"
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MQHOOK_* setting from the caller's environment reaches a broker started here."""
    for name in list(os.environ):
        if name.startswith("MQHOOK_") and name != "MQHOOK_REQUIRE_NATIVE":
            monkeypatch.delenv(name)


# -- what the bench knows, without processes ----------------------------------------------------


def test_default_settings_are_equal(clean_env: None) -> None:
    mqhook = mqhook_settings(os.environ)
    mosquitto = mosquitto_settings(mosquitto_config(1884))
    assert mqhook == {
        "max_inflight": DEFAULTS.max_inflight,
        "max_queued": DEFAULTS.max_queued_messages,
        "nodelay": True,
    }
    assert mosquitto == mqhook
    assert settings_differ([("mqhook", mqhook), ("mosquitto", mosquitto)]) == []


def test_mqhook_settings_follow_its_config_file_then_environment(tmp_path: Path) -> None:
    conf = tmp_path / "mqhook.toml"
    conf.write_text("[mqtt]\nmax_queued_messages = 5\nmax_inflight = 7\n")
    env = {"MQHOOK_MQTT__MAX_INFLIGHT": "9", "MQHOOK_UNRELATED": "x"}
    assert mqhook_settings(env, ["--config", str(conf)]) == {"max_inflight": 9, "max_queued": 5, "nodelay": True}
    assert (mqhook_settings({}, [f"--config={conf}"]) or {}).get("max_queued") == 5
    assert (mqhook_settings({"MQHOOK_MQTT__MAX_QUEUED_MESSAGES": "10_000_000"}) or {}).get("max_queued") == 10_000_000
    # a configuration mqhook would refuse: unknown, not a guess
    assert mqhook_settings({"MQHOOK_MQTT__MAX_INFLIGHT": "0"}) is None


def test_mosquitto_settings_last_line_wins() -> None:
    conf = mosquitto_config(1884, ["max_queued_messages 10000000", "max_inflight_messages 0", "set_tcp_nodelay false"])
    assert mosquitto_settings(conf) == {"max_inflight": None, "max_queued": 10_000_000, "nodelay": False}
    # without the lines: mosquitto's own defaults
    assert mosquitto_settings("listener 1884\n") == {"max_inflight": 20, "max_queued": 1000, "nodelay": False}


def test_differences_and_the_header() -> None:
    mqhook = {"max_inflight": 65535, "max_queued": 10_000_000, "nodelay": True}
    mosquitto = {"max_inflight": None, "max_queued": 1000, "nodelay": True}
    # a window of every packet id is an unlimited one: only the queue differs
    assert settings_differ([("mqhook", mqhook), ("mosquitto", mosquitto)]) == [
        {"setting": "max_queued", "values": {"mqhook": 10_000_000, "mosquitto": 1000}}
    ]
    lines = report.settings_lines(
        [{"name": "mqhook", "settings": mqhook}, {"name": "mosquitto", "settings": mosquitto}]
    )
    assert lines == [
        "settings: mqhook max_inflight 65535, max_queued 10000000, nodelay on"
        " | mosquitto max_inflight unlimited, max_queued 1000, nodelay on",
        "differs: max_queued (mqhook 10000000, mosquitto 1000)",
    ]
    # a broker the bench did not start: unknown, and no claim about what differs
    lines = report.settings_lines([{"name": "target", "settings": None}, {"name": "mosquitto", "settings": mosquitto}])
    assert lines == [
        "settings: target unknown (not started by the bench)"
        " | mosquitto max_inflight unlimited, max_queued 1000, nodelay on"
    ]
    assert settings_differ([("target", None), ("mosquitto", mosquitto)]) is None


# -- the brokers the bench starts (real processes) --------------------------------------------------


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.fixture
def started() -> Iterator[list[brokers.BrokerProcess]]:
    procs: list[brokers.BrokerProcess] = []
    yield procs
    for b in reversed(procs):
        b.stop()


def _start(args: list[str], started: list[brokers.BrokerProcess]) -> tuple[list[Any], Any, Any]:
    ns = cli.parser().parse_args(["--start-mqhook", "--against", "mosquitto", *args])
    targets = cli.start_targets(ns, None, started)
    mqhook, mosquitto = started
    return targets, mqhook, mosquitto


@needs_mosquitto
def test_without_options_both_started_brokers_have_mqhooks_defaults(
    clean_env: None, started: list[brokers.BrokerProcess]
) -> None:
    targets, mqhook, mosquitto = _start([], started)
    assert not any(k.startswith("MQHOOK_MQTT__") for k in _environ(mqhook.pid))
    conf = Path(mosquitto.cmd[-1]).read_text()
    assert f"max_queued_messages {DEFAULTS.max_queued_messages}\n" in conf
    assert f"max_inflight_messages {DEFAULTS.max_inflight}\n" in conf
    assert "set_tcp_nodelay true\n" in conf
    assert targets[0].settings == targets[1].settings == mqhook_settings({})
    assert settings_differ([(t.name, t.settings) for t in targets]) == []


@needs_mosquitto
def test_max_queued_and_max_inflight_reach_both_started_brokers(
    clean_env: None, started: list[brokers.BrokerProcess]
) -> None:
    targets, mqhook, mosquitto = _start(["--max-queued", "10000000", "--max-inflight", "0"], started)
    env = _environ(mqhook.pid)
    assert env["MQHOOK_MQTT__MAX_QUEUED_MESSAGES"] == "10000000"
    assert env["MQHOOK_MQTT__MAX_INFLIGHT"] == "65535"  # mqhook's maximum stands for unlimited
    lines = Path(mosquitto.cmd[-1]).read_text().splitlines()
    assert [ln for ln in lines if ln.startswith("max_queued_messages")][-1] == "max_queued_messages 10000000"
    assert [ln for ln in lines if ln.startswith("max_inflight_messages")][-1] == "max_inflight_messages 0"
    assert targets[0].settings["max_queued"] == targets[1].settings["max_queued"] == 10_000_000
    assert targets[1].settings["max_inflight"] is None
    assert settings_differ([(t.name, t.settings) for t in targets]) == []
    header = report.settings_lines([{"name": t.name, "settings": t.settings} for t in targets])
    assert header == [
        "settings: mqhook max_inflight 65535 (its maximum, for --max-inflight 0), max_queued 10000000, nodelay on"
        " | mosquitto max_inflight unlimited, max_queued 10000000, nodelay on"
    ]


@needs_mosquitto
def test_the_option_wins_over_the_environment_and_mosquitto_option_over_the_option(
    monkeypatch: pytest.MonkeyPatch, clean_env: None, started: list[brokers.BrokerProcess]
) -> None:
    monkeypatch.setenv("MQHOOK_MQTT__MAX_QUEUED_MESSAGES", "5")
    targets, mqhook, _ = _start(["--max-queued", "2000", "--mosquitto-option", "max_queued_messages 3000"], started)
    assert _environ(mqhook.pid)["MQHOOK_MQTT__MAX_QUEUED_MESSAGES"] == "2000"
    assert settings_differ([(t.name, t.settings) for t in targets]) == [
        {"setting": "max_queued", "values": {"mqhook": 2000, "mosquitto": 3000}}
    ]
