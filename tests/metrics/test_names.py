"""Metric names and labels follow the Prometheus conventions (DESIGN.md habit 11), read from a
real ``GET /metrics`` of an idle broker started in-process: every series exists at zero.

The exposition is parsed with prometheus_client's text parser, not with ``mqhook.metrics``.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from mqhook.app import App
from mqhook.config import load
from mqhook.metrics import ALL_METRICS

HOOKS = ("alpha", "beta-2")
NODE = "mqhook@names-test"
# Labels whose values are unbounded (or personal): never allowed.
FORBIDDEN_LABELS = {"clientid", "client_id", "topic", "username", "peerhost", "peername", "id", "url"}
UNIT_WORDS = ("seconds", "bytes")
BAD_UNITS = re.compile(r"_(ms|msec|millis|milliseconds|us|ns|minutes|hours|kb|mb|kib|mib|percent)(_|$)")
BASE_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def _config(data_dir: str) -> Any:
    hooks = [{"name": n, "url": "http://127.0.0.1:9/never", "events": ["message.publish"]} for n in HOOKS]
    admin = {"bind": "127.0.0.1:0", "default_password": "names-test"}
    overrides = {
        "node": NODE,
        "mqtt": {"bind": "127.0.0.1:0"},
        "admin": admin,
        "webhooks": hooks,
        "data_dir": data_dir,
    }
    return load(environ={}, overrides=overrides)


async def _scrape(data_dir: str) -> tuple[str, str]:
    app = App(_config(data_dir))
    await app.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://{app.admin_address}/metrics") as resp:
            assert resp.status == 200
            return resp.headers["Content-Type"], await resp.text()
    finally:
        await app.stop()


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return asyncio.run(_scrape(str(tmp_path_factory.mktemp("names-data"))))


@pytest.fixture(scope="module")
def families(scrape: tuple[str, str]) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(scrape[1])}


def _samples(families: dict[str, Any]) -> Iterator[tuple[Any, Sample]]:
    for fam in families.values():
        for s in fam.samples:
            yield fam, s


def test_content_type_is_the_prometheus_text_format(scrape: tuple[str, str]) -> None:
    assert scrape[0].startswith("text/plain; version=0.0.4")


def test_every_name_has_the_mqhook_prefix_or_is_a_standard_process_metric(families: dict[str, Any]) -> None:
    for name in families:
        assert name.startswith(("mqhook_", "process_")), name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name


def test_counters_end_in_total_and_nothing_else_does(families: dict[str, Any]) -> None:
    for fam, s in _samples(families):
        if fam.type == "counter":
            assert s.name.endswith("_total"), s.name
        else:
            assert not s.name.endswith("_total"), s.name


def test_units_are_base_units_and_come_last(families: dict[str, Any]) -> None:
    for fam in families.values():
        base = fam.name
        assert not BAD_UNITS.search(base), f"{base}: use base units (_seconds, _bytes)"
        for unit in UNIT_WORDS:
            if unit in base.split("_"):
                assert base.endswith("_" + unit), f"{base}: the unit {unit!r} must be the last word"
        if fam.type == "histogram":
            assert base.endswith(("_seconds", "_bytes", "_events")), f"{base}: a histogram names its unit"
        for s in fam.samples:
            assert s.name == base or s.name[len(base) :] in BASE_SUFFIXES, s.name


def test_no_unbounded_labels(families: dict[str, Any]) -> None:
    for _, s in _samples(families):
        assert not FORBIDDEN_LABELS & set(s.labels), s


def test_label_values_come_from_closed_sets(families: dict[str, Any]) -> None:
    allowed = {
        "qos": {"0", "1", "2"},
        "webhook": set(HOOKS),
        "action": {"publish", "subscribe"},
        "result": None,  # connect results or allow/deny: checked below by shape
        "outcome": {"2xx", "3xx", "4xx", "5xx", "other_status", "timeout", "connection_error"},
        "node": {NODE},  # mqhook_node_info only: one value per process
    }
    for _, s in _samples(families):
        for label, value in s.labels.items():
            values = allowed.get(label)
            if values is not None:
                assert value in values, (s.name, label, value)
            elif label == "le":
                assert value == "+Inf" or float(value) > 0, s
            else:
                assert re.fullmatch(r"[A-Za-z0-9_.]+", value), (s.name, label, value)


def test_every_defined_metric_is_exposed_at_zero_after_start_up(families: dict[str, Any]) -> None:
    for d in ALL_METRICS:
        base = d.name.removesuffix("_total") if d.kind == "counter" else d.name
        fam = families.get(base)
        assert fam is not None, f"{d.name} missing from /metrics"
        assert fam.type == d.kind, d.name
        assert fam.samples, f"{d.name} has no series at start-up"
        for s in fam.samples:
            assert set(s.labels) - {"le"} == set(d.labels), (d.name, s.labels)
            if d.name in ("mqhook_build_info", "mqhook_node_info"):
                assert s.value == 1
            elif d.name.startswith("mqhook_event_loop_lag"):
                assert 0 <= s.value < 1.0
            elif d.name == "mqhook_max_connections":  # a limit, not a count: what the open files allow
                assert s.value >= 1
            else:
                assert s.value == 0, s
        if "webhook" in d.labels:
            assert {s.labels["webhook"] for s in fam.samples} == set(HOOKS), d.name


def test_reason_series_are_pre_initialised(families: dict[str, Any]) -> None:
    def labels(name: str, label: str) -> set[str]:
        return {s.labels[label] for s in families[name].samples}

    assert {"no_subscribers", "expired"} <= labels("mqhook_messages_dropped", "reason")
    assert {"queue_full", "qos0_msg", "too_large"} <= labels("mqhook_deliveries_dropped", "reason")
    assert {"success", "client_identifier_not_valid"} <= labels("mqhook_connects", "result")
    assert {"normal", "tcp_closed", "keepalive_timeout"} <= labels("mqhook_disconnects", "reason")
    assert {"queue_full", "retries_exhausted", "request_refused", "stopped"} <= labels(
        "mqhook_webhook_events_dropped", "reason"
    )
    assert {"PUBLISH", "CONNECT", "PINGREQ"} <= labels("mqhook_packets_received", "type")
    authz = {(s.labels["action"], s.labels["result"]) for s in families["mqhook_authorization_checks"].samples}
    assert authz == {("publish", "allow"), ("publish", "deny"), ("subscribe", "allow"), ("subscribe", "deny")}


def test_standard_process_metrics_are_present(families: dict[str, Any]) -> None:
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"):
        fam = families.get(name)
        assert fam is not None and fam.samples, name
        assert all(math.isfinite(s.value) for s in fam.samples)


def test_histograms_have_cumulative_buckets_ending_in_inf(families: dict[str, Any]) -> None:
    for fam in families.values():
        if fam.type != "histogram":
            continue
        by_hook: dict[str, list[Sample]] = {}
        for s in fam.samples:
            if s.name.endswith("_bucket"):
                by_hook.setdefault(s.labels["webhook"], []).append(s)
        for buckets in by_hook.values():
            les = [float(s.labels["le"]) for s in buckets]
            assert les == sorted(les) and les[-1] == math.inf, fam.name


def test_the_node_is_named_once_and_no_other_metric_has_a_node_label(families: dict[str, Any]) -> None:
    assert [s.labels for s in families["mqhook_node_info"].samples] == [{"node": NODE}]
    for fam, s in _samples(families):
        assert fam.name == "mqhook_node_info" or "node" not in s.labels, s


def test_cluster_metrics_only_while_clustered(families: dict[str, Any]) -> None:
    assert not [name for name in families if name.startswith("mqhook_cluster")]
