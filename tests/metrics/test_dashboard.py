"""The Grafana dashboard and the README agree with the metrics mqhook exposes (no Prometheus needed;
test_prometheus.py runs every panel's query against a real one)."""

from __future__ import annotations

import re

from mqhook.metrics import ALL_METRICS

from .kit import ROOT, dashboard, panels, substitute, targets

PROCESS = {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds"}
NAME = re.compile(r"\b((?:mqhook|process)_[a-z0-9_]+)")


def _known() -> set[str]:
    names = set(PROCESS)
    for d in ALL_METRICS:
        names.add(d.name)
        if d.kind == "histogram":
            names |= {d.name + "_bucket", d.name + "_sum", d.name + "_count"}
    return names


def test_variables_datasource_and_webhook() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert set(variables) == {"datasource", "webhook"}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    wh = variables["webhook"]
    assert wh["type"] == "query" and wh["multi"] and wh["includeAll"]
    assert wh["query"]["query"] == "label_values(mqhook_webhook_events_matched_total, webhook)"
    assert wh["datasource"]["uid"] == "${datasource}"


def test_every_panel_queries_the_datasource_variable() -> None:
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels(dash):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}" and t["expr"].strip(), p["title"]
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]


def test_panels_only_use_metrics_mqhook_exposes() -> None:
    known = _known()
    for title, ref, expr in targets(dashboard()):
        for name in NAME.findall(expr):
            assert name in known, f"panel {title!r} {ref}: unknown metric {name}"


def test_variables_in_expressions_are_the_dashboards_or_grafanas() -> None:
    values = {"webhook": "x", "__rate_interval": "1m"}
    for title, _, expr in targets(dashboard()):
        assert "$" not in substitute(expr, values), title


def test_the_dashboard_covers_what_the_issue_asks_for() -> None:
    exprs = "\n".join(e for _, _, e in targets(dashboard()))
    for needle in (
        "mqhook_connections",
        "mqhook_sockets",
        "mqhook_max_connections",
        "mqhook_connections_paused",
        "mqhook_subscribers_behind",
        "rate(mqhook_flow_control_timeouts_total[$__rate_interval])",
        "sum by (reason) (rate(mqhook_connections_closed_before_connect_total[$__rate_interval]))",
        "mqhook_messages_received_total",
        "mqhook_messages_sent_total",
        "mqhook_messages_dropped_total",
        "mqhook_deliveries_dropped_total",
        "mqhook_webhook_events_delivered_total",
        "mqhook_webhook_events_failed_total",
        "mqhook_webhook_queue_events",
        "mqhook_webhook_inflight_requests",
        "histogram_quantile(0.5, sum by (webhook, le) (rate(mqhook_webhook_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (webhook, le) (rate(mqhook_webhook_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (webhook, le) (rate(mqhook_webhook_delivery_latency_seconds_bucket",
        "mqhook_webhook_batch_size_events",
        "mqhook_webhook_events_retried_total",
    ):
        assert needle in exprs, needle


def test_provisioning_files() -> None:
    dashboards = (ROOT / "grafana" / "provisioning" / "dashboards.yaml").read_text()
    datasources = (ROOT / "grafana" / "provisioning" / "datasources.yaml").read_text()
    assert "apiVersion: 1" in dashboards and "type: file" in dashboards
    assert "apiVersion: 1" in datasources and "type: prometheus" in datasources


def test_readme_lists_every_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics and Grafana") :]
    for d in ALL_METRICS:
        assert f"`{d.name}`" in section, d.name
    assert "grafana/mqhook-dashboard.json" in section
