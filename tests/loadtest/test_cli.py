"""``mqhook bench`` from the command line: JSON keys, exit status, helpers, bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mqhook.loadtest import cli, report
from mqhook.loadtest.brokers import MOSQUITTO_PATHS

ROOT = Path(__file__).resolve().parents[2]
RUN_KEYS = {
    "broker", "address", "pid", "run", "mode", "token", "errors", "published", "packets_sent", "acked", "unacked",
    "expected", "received", "distinct", "lost", "dups", "reordered", "foreign", "publish_s", "elapsed_s",
    "msgs_in_per_s", "msgs_out_per_s", "latency_ms", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
    "latency_p99_9_ms", "latency_buckets_us", "broker_cpu_s", "broker_cpu_s_per_million", "broker_rss_kb_before",
    "broker_rss_kb", "broker_hwm_kb", "generator_cpu_s", "generator_cpu_s_per_million", "timeline_in",
    "timeline_out", "stalled", "drain_stalled",
}  # fmt: skip
CONN_KEYS = {
    "attempted", "ok", "failed", "failures", "open_s", "connects_per_s", "tcp_connect_ms", "latency_ms",
    "latency_p50_ms", "latency_p99_ms", "broker_cpu_s", "broker_cpu_ms_per_connect", "broker_rss_kb_before",
    "broker_rss_kb", "rss_per_connection_kb", "held",
}  # fmt: skip


def bench(
    *args: str, timeout: float = 90.0, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQHOOK_")}
    env.update(env_extra or {})
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(
        [sys.executable, "-m", "mqhook", "bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help() -> None:
    proc = bench("--help")
    assert proc.returncode == 0
    for flag in ("--against", "--sink", "--procs", "--mode", "--plot", "--start-mosquitto", "--broker-pid",
                 "--max-queued", "--max-inflight"):  # fmt: skip
        assert flag in proc.stdout


def test_json_has_the_documented_keys(default_broker: Any, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    b = default_broker
    proc = bench("--port", str(b.mqtt_port), "--broker-pid", str(b.pid), "--pubs", "2", "--count", "400",
                 "--rate", "800", "--qos", "1", "--json", str(out), "--progress", "on")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "msg/s out" in proc.stdout and "p99.9 ms" in proc.stdout
    assert " sent " in proc.stderr and " recv " in proc.stderr  # the live progress line (\r became \n)
    doc = json.loads(out.read_text())
    assert {"version", "command", "machine", "scenario", "description", "targets", "repeat", "runs", "summary"} <= set(
        doc
    )
    (run,) = doc["runs"]
    assert set(run) >= RUN_KEYS, RUN_KEYS - set(run)
    assert run["published"] == 400 and run["lost"] == 0 and run["pid"] == b.pid
    assert doc["summary"]["medians"]["target"]["msgs_out_per_s"] == run["msgs_out_per_s"]
    assert doc["scenario"]["qos"] == 1 and doc["scenario"]["effective_window"] == 1000


def test_conn_storm_json(default_broker: Any, tmp_path: Path) -> None:
    out = tmp_path / "storm.json"
    b = default_broker
    proc = bench("--port", str(b.mqtt_port), "--broker-pid", str(b.pid), "--mode", "conn-storm",
                 "--connections", "50", "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert set(run) >= CONN_KEYS, CONN_KEYS - set(run)
    assert run["ok"] == 50


def test_loss_gives_exit_status_1(default_broker: Any) -> None:
    # a port where nothing listens: the run fails, and says why
    from mqhook.loadtest.brokers import free_port

    proc = bench("--port", str(free_port()), "--count", "10")
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--qos", "3"], "invalid choice"),
        (["--topology", "1:1", "--pubs", "2", "--subs", "1"], "1:1 needs as many subs as pubs"),
        (["--payload", "8"], "at least 32"),
        (["--against", "nonsense"], "HOST:PORT"),
        (["--max-queued", "5000"], "set the brokers the bench starts"),  # --port 1: a broker it did not start
        (["--start-mqhook", "--max-queued", "0"], "mosquitto reads 0 as no maximum"),
        (["--start-mqhook", "--max-queued", "10000001"], "--max-queued must be from 1 to 10000000"),
        (["--start-mqhook", "--max-inflight", "65536"], "--max-inflight must be from 0"),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    proc = bench(*args, "--port", "1")
    assert proc.returncode != 0
    assert message in proc.stderr


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--port", "1", "--plot", "x.png"])
    assert "pip install matplotlib" in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        report.plot({"scenario": {"mode": "pubsub"}}, "x.png")
    assert "pip install matplotlib" in str(exc.value)


def test_plot(default_broker: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from mqhook.loadtest import Scenario, Target, run

    b = default_broker
    result = run(Scenario(count=300), [Target("mqhook", b.host, b.mqtt_port, b.pid)])
    path = tmp_path / "bench.png"
    report.plot(result, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sink_alone_stops_by_itself(tmp_path: Path) -> None:
    out = tmp_path / "sink.json"
    proc = bench("--sink", "--port", "0", "--max-seconds", "0.5", "--json", str(out), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "listening on http://127.0.0.1:" in proc.stderr
    assert "duplicates by id: 0" in proc.stdout
    assert json.loads(out.read_text())["events"] == 0


mosquitto = next((p for p in MOSQUITTO_PATHS if os.access(p, os.X_OK)), None)
needs_mosquitto = pytest.mark.skipif(mosquitto is None, reason="mosquitto is not installed")


@needs_mosquitto
def test_against_mosquitto(default_broker: Any, tmp_path: Path) -> None:
    out = tmp_path / "vs.json"
    b = default_broker
    proc = bench("--port", str(b.mqtt_port), "--broker-pid", str(b.pid), "--name", "mqhook", "--against",
                 "mosquitto", "--repeat", "2", "--count", "300", "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "ratio mqhook / mosquitto" in proc.stdout
    doc = json.loads(out.read_text())
    assert [r["broker"] for r in doc["runs"]] == ["mqhook", "mosquitto", "mqhook", "mosquitto"]
    assert all(r["lost"] == 0 and r["received"] == 300 for r in doc["runs"])
    assert doc["runs"][1]["broker_cpu_s"] is not None  # the bench started it, so it knows its pid
    assert set(doc["summary"]["ratio"]) >= {"msgs_out_per_s", "latency_p99_ms"}
    # the bench did not start the first broker: its settings are unknown, and so is what differs
    assert "settings: mqhook unknown (not started by the bench) | mosquitto max_inflight 32" in proc.stdout
    assert doc["targets"][0]["settings"] is None and doc["settings_differ"] is None
    assert doc["targets"][1]["settings"] == {"max_inflight": 32, "max_queued": 1000, "nodelay": True}


@needs_mosquitto
def test_a_setting_given_to_one_broker_only_is_reported(tmp_path: Path) -> None:
    # issue 10: mqhook's queue raised through its environment, mosquitto's left at 1000
    out = tmp_path / "vs.json"
    proc = bench("--start-mqhook", "--against", "mosquitto", "--repeat", "1", "--count", "300", "--qos", "1",
                 "--json", str(out), env_extra={"MQHOOK_MQTT__MAX_QUEUED_MESSAGES": "10000000"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    header = proc.stdout.splitlines()[1:3]
    assert header == [
        "settings: mqhook max_inflight 32, max_queued 10000000, nodelay on"
        " | mosquitto max_inflight 32, max_queued 1000, nodelay on",
        "differs: max_queued (mqhook 10000000, mosquitto 1000)",
    ]
    assert "differs: max_queued (mqhook 10000000, mosquitto 1000)" in proc.stderr  # said before the runs, too
    doc = json.loads(out.read_text())
    assert doc["settings_differ"] == [{"setting": "max_queued", "values": {"mqhook": 10_000_000, "mosquitto": 1000}}]


@needs_mosquitto
def test_max_queued_gives_both_brokers_the_same_queue(tmp_path: Path) -> None:
    out = tmp_path / "vs.json"
    proc = bench("--start-mqhook", "--against", "mosquitto", "--repeat", "1", "--count", "300", "--qos", "1",
                 "--max-queued", "10000000", "--json", str(out),
                 env_extra={"MQHOOK_MQTT__MAX_QUEUED_MESSAGES": "7"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.splitlines()[1] == (
        "settings: mqhook max_inflight 32, max_queued 10000000, nodelay on"
        " | mosquitto max_inflight 32, max_queued 10000000, nodelay on"
    )
    assert "differs:" not in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["settings_differ"] == []
    assert [t["settings"]["max_queued"] for t in doc["targets"]] == [10_000_000, 10_000_000]
    assert all(r["lost"] == 0 and r["received"] == 300 for r in doc["runs"])


@needs_mosquitto
def test_start_mosquitto_alone_stops_by_itself() -> None:
    proc = bench("--start-mosquitto", "--port", "0", "--max-seconds", "0.5", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "mosquitto listening on 127.0.0.1:" in proc.stdout
    assert "max_queued_messages 1000" in proc.stdout


@needs_mosquitto
def test_start_mosquitto_alone_takes_the_limits() -> None:
    proc = bench("--start-mosquitto", "--port", "0", "--max-seconds", "0.5", "--max-queued", "5000",
                 "--max-inflight", "0", timeout=30)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-2:] == ["max_inflight_messages 0", "max_queued_messages 5000"]
