"""End to end with a real Prometheus: every Grafana panel's PromQL returns data.

One module-scoped stack: a ``python -m mqhook run`` process with a webhook posting to a real
receiver that fails part of the time (every 3rd request 503, retried; every 7th 400, failed),
and Debian's ``prometheus`` on a free loopback port scraping ``/metrics`` every second. paho-mqtt
clients publish QoS 0/1/2 traffic; once the webhook has settled and Prometheus has scraped the
final counters, every target of every dashboard panel is run through ``/api/v1/query`` with the
variables substituted. ``promtool`` checks a scrape (``check metrics``) and every panel expression
(``check rules`` on a generated rules file: one recording rule per expression).

Skipped only when ``prometheus`` is not installed (``.ci/run`` installs it). Every wait is bounded;
every process is stopped in the fixture's ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import ADMIN_PASSWORD, admin_get

from . import kit

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
LISTENING = re.compile(r"listening mqtt=(\S+):(\d+) admin=(\S+)")
HOOK = "e2e"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(PROMETHEUS).exists(), reason="prometheus is not installed (apt-get install prometheus)"
    ),
]


def _wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Stack:
    """The processes of the test and how to reach them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.receiver: kit.ThreadedReceiver | None = None
        self.broker: subprocess.Popen[str] | None = None
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.broker_lines: list[str] = []
        self.mqtt_port = 0
        self.admin = ""
        self.prom = ""
        self.prom_log = tmp / "prometheus.log"
        self.started_at = 0.0  # monotonic time of Prometheus's first scrape
        self._drain: threading.Thread | None = None

    # -- processes -----------------------------------------------------------------------------
    def start_broker(self) -> None:
        assert self.receiver is not None
        cfg = self.tmp / "mqhook.toml"
        cfg.write_text(
            'node = "e2e@127.0.0.1"\n'
            "[[webhooks]]\n"
            f'name = "{HOOK}"\nurl = "{self.receiver.url()}"\n'
            'events = ["message.publish", "client.connected"]\ntopics = ["t/#"]\n'
            'batch_size = 5\nbatch_time = "10ms"\nmax_retries = 2\n'
            'retry_backoff = "10ms"\nretry_backoff_max = "50ms"\nrequest_timeout = "5s"\n'
            "[[webhooks]]\n"
            'name = "idle"\nurl = "http://127.0.0.1:9/never"\nevents = ["message.publish"]\ntopics = ["never/#"]\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MQHOOK_")}
        env["PYTHONPATH"] = str(kit.ROOT / "src")
        env["MQHOOK_ADMIN__DEFAULT_PASSWORD"] = ADMIN_PASSWORD
        cmd = [sys.executable, "-m", "mqhook", "run", "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"]
        cmd += ["--data-dir", str(self.tmp / "data")]
        self.broker = subprocess.Popen(
            [*cmd, "--config", str(cfg)],
            cwd=kit.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        stderr = self.broker.stderr
        assert stderr is not None
        self._drain = threading.Thread(target=lambda: self.broker_lines.extend(stderr), daemon=True)
        self._drain.start()
        m = _wait(lambda: next(filter(None, map(LISTENING.search, self.broker_lines)), None), 20, "mqhook")
        self.mqtt_port = int(m.group(2))
        self.admin = f"http://{m.group(3)}"

    def start_prometheus(self) -> None:
        admin = self.admin.removeprefix("http://")
        config = self.tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: mqhook\n    static_configs:\n"
            f'      - targets: ["{admin}"]\n'
        )
        for _ in range(3):  # the free port may be taken between the probe and the bind
            port = kit.free_port()
            with self.prom_log.open("ab") as log:
                self.prometheus = subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.tmp / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            self.prom = f"http://127.0.0.1:{port}"
            if _wait(lambda: self.prometheus.poll() is not None or self._ready(), 30, "prometheus /-/ready") is True:
                return
        raise AssertionError(f"prometheus did not start:\n{self.prom_log.read_text()[-3000:]}")

    def _ready(self) -> bool:
        with contextlib.suppress(OSError):
            return _get(self.prom + "/-/ready", 1.0).startswith(b"Prometheus")
        return False

    def stop(self) -> None:
        _stop(self.prometheus)
        _stop(self.broker)
        if self.broker is not None and self.broker.stderr is not None:
            # Closed only once the reader saw EOF: closing a pipe another thread reads blocks on its lock.
            if self._drain is not None:
                self._drain.join(5)
            if self._drain is None or not self._drain.is_alive():
                self.broker.stderr.close()
        if self.receiver is not None:
            self.receiver.stop()

    # -- queries ---------------------------------------------------------------------------------
    def query(self, promql: str) -> dict[str, Any]:
        url = self.prom + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            body = _get(url)
        except urllib.error.HTTPError as exc:
            body = exc.read()
        return json.loads(body)

    def scalar(self, promql: str) -> float | None:
        res = self.query(promql)
        result = res.get("data", {}).get("result") or []
        return float(result[0]["value"][1]) if result else None

    def webhook_stats(self, name: str = HOOK) -> dict[str, Any]:
        return admin_get(self.admin.removeprefix("http://"), "/api/v1/stats")["webhooks"][name]


def _traffic(st: Stack) -> None:
    """Four bursts of QoS 0/1/2 publishes to a subscribed topic (-> the webhook) and one to nobody.
    Each burst starts once the one before has reached the subscriber and a Prometheus scrape: the
    series rise over several scrapes, not in one step."""
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-sub")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-pub")
    got: list[int] = []
    subacks: list[tuple[int, list[int]]] = []
    sub.on_message = lambda c, u, msg: got.append(1)
    sub.on_subscribe = lambda c, u, mid, codes, props: subacks.append((mid, [rc.value for rc in codes]))
    try:
        for client in (sub, pub):
            client.connect("127.0.0.1", st.mqtt_port, keepalive=30)
            client.loop_start()
        mid = sub.subscribe("t/#", qos=2)[1]
        _wait(lambda: sub.is_connected() and pub.is_connected(), 10, "paho connections")
        _wait(lambda: subacks, 10, "the SUBACK")
        assert subacks == [(mid, [2])]
        sent = received = 0
        for burst in range(4):
            infos = [pub.publish(f"t/{i % 5}", b"m%d" % i, qos=i % 3) for i in range(40)]
            infos.append(pub.publish(f"nobody/{burst}", b"lost", qos=0))
            for info in infos:
                info.wait_for_publish(10)
            sent += 40
            received += 41
            _wait(lambda n=sent: len(got) >= n, 15, f"{sent} messages at the subscriber")
            _wait(
                lambda n=received: (st.scalar("sum(mqhook_messages_received_total)") or 0) >= n,
                15,
                f"a scrape that saw burst {burst + 1}",
            )
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(tmp_path_factory.mktemp("prometheus-e2e"))
    try:
        st.receiver = kit.ThreadedReceiver(kit.flaky)
        st.start_broker()
        st.start_prometheus()
        up = 'count_over_time(up{job="mqhook"}[5m])'
        _wait(lambda: (st.scalar(up) or 0) >= 2, 30, "two scrapes before the traffic")
        st.started_at = time.monotonic() - 2.0
        zero = st.scalar(f'mqhook_webhook_events_delivered_total{{webhook="{HOOK}"}}')
        assert zero == 0, "series exist at zero from start-up"
        _traffic(st)

        def settled() -> dict[str, Any] | None:
            s = st.webhook_stats()
            done = s["success"] + s["failed"] + sum(s["dropped"].values())
            return s if s["matched"] and done == s["matched"] and not s["queuing"] and not s["inflight"] else None

        final = _wait(settled, 30, "the webhook to settle")
        delivered = f'mqhook_webhook_events_delivered_total{{webhook="{HOOK}"}}'
        _wait(lambda: st.scalar(delivered) == final["success"], 15, "Prometheus to scrape the final counters")
        _wait(lambda: (st.scalar(up) or 0) >= 6, 15, "a few scrapes")
        yield st
    except BaseException:
        tail = "".join(st.broker_lines[-30:])
        prom = st.prom_log.read_text()[-3000:] if st.prom_log.exists() else ""
        print(f"broker stderr:\n{tail}\nprometheus log:\n{prom}", file=sys.stderr)
        raise
    finally:
        st.stop()


def _values(st: Stack) -> dict[str, str]:
    window = max(10, math.ceil(time.monotonic() - st.started_at) + 2)
    return {"webhook": HOOK, "__rate_interval": f"{window}s", "__interval": "1s", "datasource": ""}


def test_prometheus_scrapes_mqhook_and_the_receiver_failed_part_of_the_time(stack: Stack) -> None:
    targets = json.loads(_get(stack.prom + "/api/v1/targets"))["data"]["activeTargets"]
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
    stats = stack.webhook_stats()
    for outcome, minimum in (("2xx", 1), ("4xx", 1), ("5xx", 1)):
        got = stack.scalar(f'mqhook_webhook_requests_total{{webhook="{HOOK}",outcome="{outcome}"}}')
        assert got is not None and got >= minimum, outcome
    assert stack.scalar(f'sum(mqhook_webhook_requests_total{{webhook="{HOOK}"}})') == stats["requests"]
    assert stack.scalar(f'mqhook_webhook_events_failed_total{{webhook="{HOOK}"}}') == stats["failed"] > 0
    assert stack.scalar(f'mqhook_webhook_events_retried_total{{webhook="{HOOK}"}}') == stats["retried"] > 0
    assert (stack.scalar('mqhook_messages_dropped_total{reason="no_subscribers"}') or 0) >= 4


def test_every_dashboard_panel_returns_data(stack: Stack) -> None:
    values = _values(stack)
    empty: list[str] = []
    for title, ref, expr in kit.targets(kit.dashboard()):
        promql = kit.substitute(expr, values)
        res = stack.query(promql)
        assert res.get("status") == "success", f"{title} {ref}: {res.get('error')} in {promql}"
        result = res["data"]["result"]
        finite = [s for s in result if math.isfinite(float(s["value"][1]))]
        if not finite:
            empty.append(f"{title} {ref}: {promql} -> {result}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_promtool_checks_a_scrape(stack: Stack) -> None:
    body = _get(stack.admin + "/metrics")
    res = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res


def test_promtool_parses_every_panel_expression(tmp_path: Path) -> None:
    values = {"webhook": HOOK, "__rate_interval": "1m", "__interval": "15s", "datasource": ""}
    rules = [
        {"record": f"mqhook:panel{i}", "expr": kit.substitute(expr, values)}
        for i, (_, _, expr) in enumerate(kit.targets(kit.dashboard()))
    ]
    good = tmp_path / "dashboard.rules.yml"
    good.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    res = subprocess.run([PROMTOOL, "check", "rules", str(good)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(rules)} rules found" in res.stdout
    # The check has teeth: a broken expression fails it.
    bad = tmp_path / "bad.rules.yml"
    broken = [{"record": "mqhook:broken", "expr": "sum by (webhook (rate(mqhook_webhook_requests_total[1m]))"}]
    bad.write_text(json.dumps({"groups": [{"name": "bad", "rules": broken}]}))
    res = subprocess.run([PROMTOOL, "check", "rules", str(bad)], capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
