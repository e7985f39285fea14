"""`mqhook run`: the listening line, admin endpoints, config errors, env/flag overrides, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from .pahoc import V5, V311
from .rawmqtt import P_MAXIMUM_PACKET_SIZE, RawClient, publish_packet
from .util import wait_until


def test_listening_line_reports_real_ports(broker):
    b = broker()
    assert b.mqtt_port > 0
    assert b.admin_port > 0
    assert b.mqtt_port != b.admin_port
    assert f"listening mqtt={b.host}:{b.mqtt_port} admin={b.admin_host}:{b.admin_port}" in b.stderr_text()
    assert b.host == "127.0.0.1"
    assert b.alive()


def test_healthz(default_broker):
    status, body = default_broker.http_get("/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}


def test_unknown_admin_path_is_404(default_broker):
    status, _ = default_broker.http_get("/api/v1/no-such-thing")
    assert status == 404


def test_stats_shape(default_broker):
    s = default_broker.stats()
    for key in ("connections", "sessions", "subscriptions", "retained", "bytes_received", "bytes_sent"):
        assert isinstance(s[key], int), key
        assert s[key] >= 0
    for key in ("packets_received", "packets_sent", "connects", "disconnects"):
        assert isinstance(s[key], dict), key
        assert all(isinstance(v, int) for v in s[key].values()), key
    assert set(s["messages_received"]) >= {"0", "1", "2"}
    assert set(s["messages_sent"]) >= {"0", "1", "2"}
    assert set(s["messages_dropped"]) >= {
        "no_subscribers",
        "receive_maximum_exceeded",
        "packet_identifier_inuse",
        "expired",
    }
    assert set(s["deliveries_dropped"]) >= {"queue_full", "qos0_msg", "no_local", "expired", "too_large"}
    assert "success" in s["connects"]
    assert set(s["disconnects"]) >= {
        "normal",
        "tcp_closed",
        "keepalive_timeout",
        "takenover",
        "protocol_error",
        "malformed_packet",
    }


def test_stats_count_traffic(broker, clients, uid):
    b = broker()
    s0 = b.stats()
    assert s0["connections"] == 0
    assert s0["connects"]["success"] == 0
    c = clients(b, uid, protocol=V5)
    assert wait_until(lambda: b.stats()["connections"] == 1)
    c.publish(f"{uid}/nobody", b"x" * 10, qos=1)  # no subscribers
    s = b.stats()
    assert s["connects"]["success"] == 1
    assert s["packets_received"]["CONNECT"] == 1
    assert s["packets_received"]["PUBLISH"] == 1
    assert s["packets_sent"]["CONNACK"] == 1
    assert s["packets_sent"]["PUBACK"] == 1
    assert s["messages_received"]["1"] == 1
    assert s["messages_dropped"]["no_subscribers"] == 1
    assert s["bytes_received"] > 10
    assert s["bytes_sent"] >= 4 + 4  # CONNACK + PUBACK at least
    c.disconnect()
    assert b.wait_stat(("disconnects", "normal"), lambda v: v == 1) == 1
    assert b.wait_stat(("connections",), lambda v: v == 0) == 0


# ---------------------------------------------------------------------------- config errors
def run_expect_failure(broker, tmp_path, config: str | None, env: dict[str, str] | None = None, flags=None):
    args = ["run"]
    args += flags if flags is not None else ["--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"]
    if config is not None:
        path = tmp_path / "bad.toml"
        path.write_text(config)
        args += ["--config", str(path)]
    proc = broker.popen(args, env)
    try:
        _out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"broker started (or hung) with a bad config; stderr:\n{err}")
    assert proc.returncode != 0, f"exit code 0 with a bad config; stderr:\n{err}"
    assert "listening mqtt=" not in err
    return err


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ('[mqtt]\nmax_packet_size = "big"\n', ["$.mqtt.max_packet_size", "big", "int"]),
        ("[mqtt]\nfoo = 1\n", ["$.mqtt", "foo"]),
        ("[mqtt]\nreceive_maximum = true\n", ["$.mqtt.receive_maximum"]),
        ("[bogus_section]\nx = 1\n", ["bogus_section"]),
        ("[log]\nlevel = 5\n", ["$.log.level"]),
    ],
    ids=["string-for-int", "unknown-key", "bool-for-int", "unknown-section", "int-for-str"],
)
def test_bad_config_value_names_field(broker, tmp_path, config, needles):
    err = run_expect_failure(broker, tmp_path, config)
    for needle in needles:
        assert needle.lower() in err.lower(), f"{needle!r} not in stderr:\n{err}"
    assert "expect" in err.lower(), f"stderr does not say what was expected:\n{err}"


def test_bad_bind_in_config(broker, tmp_path):
    config = '[mqtt]\nbind = "nonsense"\n[admin]\nbind = "127.0.0.1:0"\n'
    err = run_expect_failure(broker, tmp_path, config, flags=[])
    assert "$.mqtt.bind" in err, err
    assert "nonsense" in err, err


def test_bad_env_value(broker, tmp_path):
    err = run_expect_failure(broker, tmp_path, None, env={"MQHOOK_MQTT__MAX_PACKET_SIZE": "lots"})
    assert "max_packet_size" in err.lower(), err
    assert "lots" in err, err


def test_bad_bound_in_config(broker, tmp_path):
    err = run_expect_failure(broker, tmp_path, "[mqtt]\nmax_qos = 3\n")
    assert "mqhook: config error: $.mqtt.max_qos: 3 is invalid; expected an integer from 0 to 2" in err, err


def test_env_var_naming_no_setting_is_a_warning(broker, uid, clients):
    # a wrapper script's variable must not stop start-up; the real settings beside it still apply
    env = {"MQHOOK_BIN": "/opt/mqhook/bin/mqhook", "MQHOOK_MQTT__MAX_INFLIGHT": "7", "MQHOOK_NO_EXT": "1"}
    b = broker(env=env)
    err = b.stderr_text()
    warning = "mqhook: warning: environment variable MQHOOK_BIN ignored: $.bin is not a setting; expected one of:"
    assert warning in err, err
    assert err.index(warning) < err.index("listening mqtt="), err  # said before starting
    assert "MQHOOK_NO_EXT" not in err and "MQHOOK_MQTT__MAX_INFLIGHT" not in err, err
    assert clients(b, uid, protocol=V311).connack_rc == 0


def test_env_var_naming_a_setting_with_a_bad_value_stays_fatal(broker, tmp_path):
    err = run_expect_failure(broker, tmp_path, None, env={"MQHOOK_MQTT__MAX_QOS": "7", "MQHOOK_BIN": "x"})
    assert "$.mqtt.max_qos: 7 is invalid; expected an integer from 0 to 2" in err, err
    assert "mqhook: warning: environment variable MQHOOK_BIN ignored" in err, err


def test_toml_syntax_error(broker, tmp_path):
    err = run_expect_failure(broker, tmp_path, "[mqtt\nmax_packet_size = 1\n")
    assert err.strip(), "no message on stderr"


def test_missing_config_file(broker, tmp_path):
    flags = ["--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--config", str(tmp_path / "nope.toml")]
    err = run_expect_failure(broker, tmp_path, None, flags=flags)
    assert "nope.toml" in err, err


# ---------------------------------------------------------------------------- overrides
def test_config_file_is_applied(broker, raw, uid):
    b = broker("[mqtt]\nmax_packet_size = 5000\n")
    c = raw(b)
    ack = c.connect(uid)
    assert ack.rc == 0
    assert ack.props.get(P_MAXIMUM_PACKET_SIZE) == 5000


def test_env_override_beats_file_and_is_enforced(broker, raw, uid):
    b = broker("[mqtt]\nmax_packet_size = 5000\n", env={"MQHOOK_MQTT__MAX_PACKET_SIZE": "100"})
    v5 = raw(b)
    ack = v5.connect(uid + "-5")
    assert ack.props.get(P_MAXIMUM_PACKET_SIZE) == 100
    # a 200-byte publish is larger than the limit: the connection is closed
    c = raw(b, version=4)
    assert c.connect(uid).rc == 0
    c.send(publish_packet(f"{uid}/big", b"x" * 200, version=4))
    c.wait_closed(5)
    # a small one on a new connection is fine
    ok = raw(b, version=4)
    assert ok.connect(uid + "-ok").rc == 0
    ok.publish(f"{uid}/small", b"x" * 10, qos=1)


def test_flag_overrides_env(broker, uid, clients):
    # the env asks for a fixed port; the flag (port 0) must win
    b = broker(env={"MQHOOK_MQTT__BIND": "127.0.0.1:1"})
    assert b.mqtt_port not in (0, 1)
    c = clients(b, uid, protocol=V311)
    assert c.connack_rc == 0


# ---------------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero(broker, sig):
    b = broker()
    t0 = time.monotonic()
    rc = b.stop(sig, timeout=8)
    assert rc == 0, f"exit code {rc}; stderr:\n{b.stderr_text()}"
    assert time.monotonic() - t0 < 8


def test_sigterm_with_connected_clients_exits_zero(broker, uid):
    b = broker()
    c = RawClient(b.host, b.mqtt_port, version=5)
    try:
        assert c.connect(uid).rc == 0
        c.subscribe(f"{uid}/#", qos=1)
        rc = b.stop(signal.SIGTERM, timeout=8)
        assert rc == 0, b.stderr_text()
        # the client sees the connection end (maybe after a DISCONNECT 0x8B server shutting down)
        got = c.wait_closed(3)
        assert all(p.name == "DISCONNECT" for p in got), got
    finally:
        c.close()
