"""Helpers for the admin REST API tests (docs/api.md), written from the document, not the code.

Every helper talks to a real ``mqhook run`` process over HTTP (``Broker.api``) or to a real
receiver / MQTT client; nothing here imports mqhook.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from conftest import ADMIN_PASSWORD, LISTENING_RE, START_TIMEOUT, Broker, wait_until

REDACTED = "******"

# The normalised form of a webhook config: every field of the README's [[webhooks]] table with
# its default (docs/api.md: "A webhook's JSON is exactly a [[webhooks]] table of the config file").
# name and url are required and have no default.
DEFAULTS: dict[str, Any] = {
    "description": "",
    "enable": True,
    "events": "all",
    "topics": ["#"],
    "method": "post",
    "headers": {"content-type": "application/json"},
    "body": None,
    "payload_encoding": "plain",
    "pool_size": 8,
    "connect_timeout": "15s",
    "request_timeout": "15s",
    "max_retries": 2,
    "retry_backoff": "1s",
    "retry_backoff_max": "30s",
    "retry_on": [429, "5xx"],
    "inflight_window": 100,
    "batch_size": 1,
    "batch_time": "0ms",
    "max_queued_events": 100000,
    "max_buffer_bytes": "256MB",
    "overflow": "drop_oldest",
    "ordering": "none",
    "secret": None,
    "durable": False,
    "fsync": "interval",
    "fsync_interval": "10ms",
    "max_event_age": "24h",
    "max_spool_bytes": "256MB",
    "dead_letter": False,
    "max_dead_letter_bytes": "64MB",
}
CONFIG_KEYS = {"name", "url", *DEFAULTS}
ITEM_KEYS = {"config", "source", "read_only", "created_at", "updated_at", "status", "metrics"}
METRICS_KEYS = {
    "matched",
    "success",
    "failed",
    "retried",
    "requests",
    "dropped",
    "queuing",
    "queuing_bytes",
    "inflight",
    "inflight_events",
    "last_error",
    "last_error_at",
    "saturated",
    "rate",
    "rate_success",
    "reset_at",
}
TEST_KEYS = {"ok", "method", "url", "status", "latency_ms", "body", "error"}
DELIVERY_KEYS = {"at", "events", "attempt", "outcome", "status", "error", "latency_ms"}
OUTCOMES = {"2xx", "3xx", "4xx", "5xx", "other_status", "timeout", "connection_error"}
CLIENT_KEYS = {
    "clientid",
    "username",
    "connected",
    "peername",
    "sockname",
    "proto_name",
    "proto_ver",
    "keepalive",
    "clean_start",
    "expiry_interval",
    "connected_at",
    "subscriptions_cnt",
    "inflight_cnt",
    "mqueue_len",
}


# ---------------------------------------------------------------------------- webhook bodies
def hook(name: str, url: str, uid: str | None = None, **opts: Any) -> dict[str, Any]:
    """A webhook CONFIG; with ``uid`` it selects only message.publish on ``uid/#`` (so tests sharing
    a broker do not see each other's messages)."""
    cfg: dict[str, Any] = {"name": name, "url": url}
    if uid is not None:
        cfg.update(events=["message.publish"], topics=[f"{uid}/#"])
    cfg.update(opts)
    return cfg


def normalised(cfg: dict[str, Any]) -> dict[str, Any]:
    """What GET must answer for ``cfg``: defaults filled in (None-valued defaults may be absent)."""
    return {**DEFAULTS, **cfg}


def assert_config_equal(got: dict[str, Any], sent: dict[str, Any]) -> None:
    """``got`` (an ITEM's config) is ``sent`` with the defaults filled, and nothing else."""
    extra = sorted(set(got) - CONFIG_KEYS)
    assert not extra, f"config has keys that are not webhook settings: {extra}; {got}"
    want = normalised(sent)
    for key, value in want.items():
        if value is None and key not in got:
            continue
        assert key in got, f"config lacks {key!r}: {got}"
        assert got[key] == value, f"config[{key!r}] = {got[key]!r}, sent/default {value!r}"


def closed_url(path: str = "/") -> str:
    """An http:// URL on a loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# ---------------------------------------------------------------------------- API calls
def create(b: Broker, cfg: dict[str, Any], auth: Any = "bearer") -> dict[str, Any]:
    status, item = b.api("POST", "/api/v1/webhooks", cfg, auth=auth)
    assert status == 201, f"POST /api/v1/webhooks {cfg} -> {status}: {item}"
    return item


def get_item(b: Broker, name: str) -> dict[str, Any]:
    status, item = b.api("GET", f"/api/v1/webhooks/{name}")
    assert status == 200, f"GET /api/v1/webhooks/{name} -> {status}: {item}"
    return item


def wh_metrics(b: Broker, name: str) -> dict[str, Any]:
    status, m = b.api("GET", f"/api/v1/webhooks/{name}/metrics")
    assert status == 200, f"GET /api/v1/webhooks/{name}/metrics -> {status}: {m}"
    return m


def wait_metrics(b: Broker, name: str, pred: Any, timeout: float = 5.0, what: str = "") -> dict[str, Any]:
    """Poll the webhook's METRICS until ``pred(metrics)``; fails with the last value."""
    last: list[dict[str, Any]] = [{}]

    def check() -> bool:
        last[0] = wh_metrics(b, name)
        return bool(pred(last[0]))

    assert wait_until(check, timeout=timeout, interval=0.05), f"metrics of {name} never {what}: {last[0]}"
    return last[0]


def deliveries(b: Broker, name: str) -> list[dict[str, Any]]:
    status, body = b.api("GET", f"/api/v1/webhooks/{name}/deliveries")
    assert status == 200, f"GET /api/v1/webhooks/{name}/deliveries -> {status}: {body}"
    assert isinstance(body, dict) and isinstance(body.get("data"), list), body
    return body["data"]


def delete_quietly(b: Broker, name: str) -> None:
    b.api("DELETE", f"/api/v1/webhooks/{name}")


def assert_error(status: int, body: Any, want_status: int, code: str, field: Any = ...) -> None:
    """An error answer of docs/api.md: JSON {"code", "message", "field"}."""
    assert status == want_status, f"expected {want_status} {code}, got {status}: {body}"
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    assert body.get("code") == code, f"expected code {code}, got {body}"
    assert isinstance(body.get("message"), str) and body["message"], f"no message: {body}"
    assert "field" in body, f"error body has no 'field' key: {body}"
    if field is not ...:
        assert body["field"] == field, f"expected field {field!r}, got {body['field']!r}: {body}"


def listing(body: Any) -> list[Any]:
    """The list of a collection answer: ``{"data": [...]}`` (as the doc's other lists) or a bare list."""
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return body["data"]
    assert isinstance(body, list), f"not a list answer: {body!r}"
    return body


def login(b: Broker, username: str = "admin", password: str = ADMIN_PASSWORD) -> tuple[int, Any]:
    return b.api("POST", "/api/v1/login", {"username": username, "password": password}, auth=None)


def fresh_token(b: Broker, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
    status, body = login(b, username, password)
    assert status == 200, f"login {username} -> {status}: {body}"
    return body["token"]


def bearer(token: str) -> str:
    return "Bearer " + token


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def prometheus(b: Broker) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = b.http_get("/metrics", auth=None)
    assert status == 200, f"GET /metrics -> {status}"
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def prom_value(b: Broker, name: str, **labels: str) -> float:
    return prometheus(b).get((name, frozenset(labels.items())), 0.0)


# ---------------------------------------------------------------------------- MQTT
def publish_n(client: Any, topic: str, n: int, prefix: str = "m", qos: int = 1) -> list[bytes]:
    """Publish ``n`` messages (payloads PREFIX-0 ...), each acknowledged; returns the payloads."""
    payloads = [f"{prefix}-{i}".encode() for i in range(n)]
    for p in payloads:
        client.publish(topic, p, qos=qos)
    return payloads


def payloads_of(events: Iterable[dict[str, Any]]) -> list[str]:
    return [e.get("payload") for e in events]


# ---------------------------------------------------------------------------- files
def files_containing(root: Path, needle: bytes) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle``."""
    return [str(p) for p in sorted(root.rglob("*")) if p.is_file() and needle in p.read_bytes()]


# ---------------------------------------------------------------------------- a bare process
class BareProcess:
    """``mqhook run`` started without the fixture's admin password (conftest's ``broker_env`` drops
    every MQHOOK_* variable): the first start must make up a random one and print it on stderr."""

    def __init__(self, factory: Any, data_dir: Path) -> None:
        self.proc: subprocess.Popen = factory.popen(
            ["run", "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--data-dir", str(data_dir)]
        )
        self.lines: list[str] = []
        self.admin = ""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        ok = wait_until(lambda: self.admin or self.proc.poll() is not None, timeout=START_TIMEOUT)
        if not self.admin:
            self.stop()
            raise AssertionError(f"mqhook did not start (ok={ok}); stderr:\n{self.stderr()}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line)
            m = LISTENING_RE.search(line)
            if m and not self.admin:
                self.admin = f"{m.group(3).strip('[]')}:{m.group(4)}"

    def stderr(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def api(self, method: str, path: str, body: Any = None, auth: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.admin}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            e.close()
            return e.code, (json.loads(raw) if raw else None)

    def stop(self) -> str:
        """SIGTERM, wait, and return everything it printed on stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._thread.join(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.stderr and not self._thread.is_alive():
            self.proc.stderr.close()
        return self.stderr()


def now() -> float:
    return time.time()


# ---------------------------------------------------------------------------- OpenAPI
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# docs/api.md, Authentication: the routes that need no credentials (GET /metrics while
# admin.metrics_auth is false, the default).
OPEN_ROUTES = {
    ("GET", "/healthz"),
    ("POST", "/api/v1/login"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/metrics"),
}


def openapi(b: Broker) -> dict[str, Any]:
    status, doc = b.api("GET", "/api/v1/openapi.json", auth=None)
    assert status == 200, f"GET /api/v1/openapi.json without credentials -> {status}: {doc}"
    assert isinstance(doc, dict), doc
    return doc


def documented_routes(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(METHOD, path template) for every operation of the document."""
    out = []
    for path, ops in doc.get("paths", {}).items():
        for method in ops:
            if method.lower() in HTTP_METHODS:
                out.append((method.upper(), path))
    return sorted(out)


def fill(path: str, values: dict[str, str]) -> str:
    """Replace each ``{param}`` by ``values[key]`` where key is "<collection>.<param>" (e.g.
    "webhooks.name", "api_keys.name") or just "<param>"; an unknown parameter fails the test."""
    parts = path.split("/")
    for i, seg in enumerate(parts):
        if seg.startswith("{") and seg.endswith("}"):
            param = seg[1:-1]
            key = f"{parts[i - 1]}.{param}"
            if key in values:
                parts[i] = values[key]
            elif param in values:
                parts[i] = values[param]
            else:
                raise AssertionError(f"no value for path parameter {seg} of {path} (not in docs/api.md)")
    return "/".join(parts)
