"""Webhook configuration fails loudly: unknown keys and bad names stop start-up with a precise message."""

from __future__ import annotations

import subprocess

import pytest

from .receiver import config_toml, webhook


def start_fails(broker, tmp_path, config: str) -> str:
    """Start ``mqhook run`` with ``config``; it must exit non-zero. Returns its stderr."""
    path = tmp_path / "bad.toml"
    path.write_text(config)
    proc = broker.popen(["run", "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--config", str(path)])
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("mqhook started with an invalid webhook config")
    assert proc.returncode != 0, err
    return err


def test_run_help_shows_webhook_flag(broker):
    proc = broker.popen(["run", "--help"])
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "--webhook" in out


def test_unknown_webhook_key_is_an_error(broker, tmp_path):
    err = start_fails(broker, tmp_path, config_toml([webhook("ok", "http://127.0.0.1:9/", batch_sise=10)]))
    assert "batch_sise" in err and "webhooks" in err, err


@pytest.mark.parametrize("name", ["-starts-with-dash", "has space", "dot.ted", ""])
def test_bad_webhook_name_is_an_error(broker, tmp_path, name):
    err = start_fails(broker, tmp_path, config_toml([webhook(name, "http://127.0.0.1:9/")]))
    assert "name" in err, err


def test_bad_webhook_flag_is_an_error(broker):
    proc = broker.popen(["run", "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--webhook", "no-url"])
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("mqhook started with --webhook no-url")
    assert proc.returncode != 0, err
    assert "webhook" in err.lower(), err


def test_bad_webhook_duration_names_path_value_and_expectation(broker, tmp_path):
    err = start_fails(broker, tmp_path, config_toml([webhook("ok", "http://127.0.0.1:9/", request_timeout="15 sec")]))
    assert "$.webhooks[0].request_timeout: '15 sec' is invalid; expected a duration > 0 such as '15s'" in err, err


def test_bad_webhook_bound_names_path_value_and_limits(broker, tmp_path):
    err = start_fails(broker, tmp_path, config_toml([webhook("ok", "http://127.0.0.1:9/", pool_size=2000)]))
    assert "$.webhooks[0].pool_size: 2000 is invalid; expected an integer from 1 to 1024" in err, err


def test_durations_sizes_and_any_case_method_are_accepted(broker):
    hook = webhook(
        "ok",
        "http://127.0.0.1:9/",
        method="PUT",
        connect_timeout="500ms",
        request_timeout=2.5,
        batch_time="1h",
        max_buffer_bytes="1KB",
    )
    b = broker(config_toml([hook]))
    assert b.alive()
