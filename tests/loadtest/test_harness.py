"""The harness against a real mqhook process (127.0.0.1): exact counts, injected faults, modes.

Small sizes and no timing assertions: speed is measured by ``mqhook bench``, never in tests.
Every run is bounded by the scenario's ``stall`` and ``timeout``.
"""

from __future__ import annotations

from typing import Any

import pytest

from mqhook.loadtest import Scenario, Target, run

Broker = Any  # tests/conftest.py's Broker: host, mqtt_port, pid

TINY = {"stall": 1.5, "timeout": 60.0}


def _target(b: Broker) -> Target:
    return Target("mqhook", b.host, b.mqtt_port, b.pid)


def _one(sc: Scenario, b: Broker, **kw: Any) -> dict[str, Any]:
    result = run(sc, [_target(b)], **kw)
    assert len(result["runs"]) == 1
    return result["runs"][0]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_counts_exactly(default_broker: Broker, qos: int) -> None:
    res = _one(Scenario(pubs=2, subs=2, qos=qos, count=600, **TINY), default_broker)
    assert not res.get("aborted"), res["errors"]
    assert res["published"] == 600
    assert res["expected"] == res["received"] == res["distinct"] == 1200
    assert res["lost"] == res["dups"] == res["foreign"] == 0
    assert res["latency_ms"]["count"] == 1200
    assert res["latency_p50_ms"] is not None and res["msgs_out_per_s"] is not None
    assert not res["stalled"] and res["errors"] == []
    assert sum(res["timeline_in"]) == 600 and sum(res["timeline_out"]) == 1200
    if qos:
        assert res["acked"] == 600 and res["unacked"] == 0
    assert res["broker_cpu_s"] is not None and res["broker_rss_kb"] > 0


@pytest.mark.parametrize(
    ("topology", "pubs", "subs", "expected"),
    [("1:1", 3, 3, 300), ("shared", 2, 3, 300), ("fan-out", 1, 3, 900), ("fan-in", 3, 1, 300)],
)
def test_topologies(default_broker: Broker, topology: str, pubs: int, subs: int, expected: int) -> None:
    res = _one(Scenario(pubs=pubs, subs=subs, topology=topology, count=300, **TINY), default_broker)
    assert res["expected"] == res["received"] == res["distinct"] == expected
    assert res["lost"] == res["dups"] == res["foreign"] == 0


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_detects_a_lost_and_a_duplicated_message(default_broker: Broker, qos: int) -> None:
    # publisher 0 counts sequence number 5 as sent but never writes it, and writes 7 twice
    sc = Scenario(pubs=2, subs=1, qos=qos, count=40, inject_skip=(5,), inject_dup=(7,), **TINY)
    res = _one(sc, default_broker)
    assert res["published"] == 40
    assert res["packets_sent"] == 40  # one skipped, one written twice
    assert res["lost"] == 1
    assert res["dups"] == 1
    assert res["distinct"] == 39 and res["received"] == 40
    assert res["stalled"]  # the drain waited --stall seconds for the missing one, then gave up


def test_detects_a_duplicate_across_a_shared_group(default_broker: Broker) -> None:
    sc = Scenario(pubs=1, subs=2, topology="shared", count=30, inject_dup=tuple(range(30)), **TINY)
    res = _one(sc, default_broker)
    assert res["lost"] == 0
    assert res["dups"] == 30  # each message written twice: a copy to each member, or both to one


def test_several_generator_processes(default_broker: Broker) -> None:
    res = _one(Scenario(pubs=3, subs=2, procs=2, qos=1, count=450, **TINY), default_broker)
    assert not res.get("aborted"), res["errors"]
    assert res["published"] == 450
    assert res["received"] == res["distinct"] == 900
    assert res["lost"] == res["dups"] == 0


def test_duration_and_rate_end_by_themselves(default_broker: Broker) -> None:
    sc = Scenario(pubs=2, subs=1, rate=200, count=None, duration=1.0, **TINY)
    res = _one(sc, default_broker)
    assert 0 < res["published"] <= 200 * 1.0 + 2
    assert res["lost"] == res["dups"] == 0 and not res["stalled"]


def test_alternating_runs_and_summary(default_broker: Broker) -> None:
    t = _target(default_broker)
    other = Target("again", t.host, t.port, t.pid)
    result = run(Scenario(count=200, **TINY), [t, other], repeat=2)
    assert [(r["broker"], r["run"]) for r in result["runs"]] == [
        ("mqhook", 1),
        ("again", 1),
        ("mqhook", 2),
        ("again", 2),
    ]
    summary = result["summary"]
    assert summary["medians"]["mqhook"]["runs"] == 2
    assert summary["ratio_of"] == "mqhook / again"
    assert summary["ratio"]["lost"] is None  # 0 / 0
    assert isinstance(summary["ratio"]["msgs_out_per_s"], float)


def test_connection_storm(default_broker: Broker) -> None:
    res = _one(Scenario(mode="conn-storm", connections=50, concurrency=10, **TINY), default_broker)
    assert res["ok"] == 50 and res["failed"] == 0
    assert res["latency_ms"]["count"] == 50
    assert res["latency_p99_ms"] is not None and res["connects_per_s"] is not None
    assert res["broker_cpu_ms_per_connect"] is not None
    assert res["rss_per_connection_kb"] is None  # nothing held open


def test_idle_connections(default_broker: Broker) -> None:
    res = _one(Scenario(mode="idle", connections=50, hold_seconds=0.2, **TINY), default_broker)
    assert res["ok"] == 50 and res["held"] == 50
    assert res["broker_rss_kb_before"] > 0 and res["broker_rss_kb"] > 0
    assert res["rss_per_connection_kb"] is not None


def test_unreachable_broker_fails_fast(default_broker: Broker) -> None:
    from mqhook.loadtest.brokers import free_port

    res = run(Scenario(count=10, connect_timeout=2.0, **TINY), [Target("nobody", "127.0.0.1", free_port())])
    (r,) = res["runs"]
    assert r["aborted"] and r["errors"]
    assert res["summary"]["medians"]["nobody"]["runs"] == 0
