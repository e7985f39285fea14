"""Shared fixtures: a real mqhook broker process on 127.0.0.1 with OS-assigned ports.

The broker contract (see the integration brief): ``python -m mqhook run --mqtt-bind H:0
--admin-bind H:0 [--config FILE]`` prints one stderr line
``listening mqtt=HOST:PORT admin=HOST:PORT`` once both listeners are up; SIGTERM exits 0.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LISTENING_RE = re.compile(r"listening mqtt=(\S+):(\d+) admin=(\S+):(\d+)")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# Every broker a test starts gets its own data directory and this first-start admin password
# (MQHOOK_ADMIN__DEFAULT_PASSWORD), so the fixture can log in to the admin API.
ADMIN_PASSWORD = "test-admin-password"


def broker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a broker process: src/ importable, no stray MQHOOK_* setting from the caller
    (the switch MQHOOK_REQUIRE_NATIVE is passed on: where CI requires the compiled modules, so does
    every broker it starts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQHOOK_") or k == "MQHOOK_REQUIRE_NATIVE"}
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 15.0, input: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m mqhook ARGS`` to completion (for commands expected to exit by themselves);
    ``input`` is written to its stdin."""
    return subprocess.run(
        [PYTHON, "-m", "mqhook", *args],
        input=input,
        cwd=ROOT,
        env=broker_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def admin_get(admin: str, path: str, password: str = ADMIN_PASSWORD, timeout: float = 10.0) -> Any:
    """GET ``path`` of the admin server at ``admin`` ("host:port") as ``admin`` -> its JSON (logs in each time)."""
    login = json.dumps({"username": "admin", "password": password}).encode()
    req = urllib.request.Request(f"http://{admin}/api/v1/login", data=login, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        token = json.loads(resp.read())["token"]
    req = urllib.request.Request(f"http://{admin}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; bounded. Returns the last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


class BrokerStartError(RuntimeError):
    pass


class Broker:
    """One running ``mqhook run`` process."""

    def __init__(
        self,
        tmp_dir: Path,
        config: str | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        mqtt_bind: str = "127.0.0.1:0",
        admin_bind: str = "127.0.0.1:0",
        data_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir if data_dir is not None else tmp_dir / f"data-{id(self):x}"
        args = [PYTHON, "-m", "mqhook", "run", "--mqtt-bind", mqtt_bind, "--admin-bind", admin_bind]
        args += ["--data-dir", str(self.data_dir)]
        env = {"MQHOOK_ADMIN__DEFAULT_PASSWORD": ADMIN_PASSWORD, **(env or {})}
        if config is not None:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            path = tmp_dir / f"mqhook-{id(self):x}.toml"
            path.write_text(config)
            args += ["--config", str(path)]
        args += extra_args or []
        self.args = args
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self.host = ""
        self.mqtt_port = 0
        self.admin_host = ""
        self.admin_port = 0
        self.returncode: int | None = None
        self._token: str | None = None
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=broker_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self._drain = threading.Thread(target=self._drain_stderr, name="broker-stderr", daemon=True)
        self._drain.start()
        if not self._listening.wait(START_TIMEOUT) or not self.mqtt_port:
            self.stop()
            raise BrokerStartError(
                f"broker did not print the listening line within {START_TIMEOUT}s "
                f"(exit code {self.proc.returncode});\nstderr:\n{self.stderr_text()}"
            )

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self._lines.append(line)
            if not self._listening.is_set():
                m = LISTENING_RE.search(line)
                if m:
                    self.host, self.mqtt_port = m.group(1).strip("[]"), int(m.group(2))
                    self.admin_host, self.admin_port = m.group(3).strip("[]"), int(m.group(4))
                    self._listening.set()
        # EOF: the process is gone; unblock a waiting constructor
        self._listening.set()

    # -- introspection -----------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def token(self) -> str:
        """A bearer token of ``admin`` (logged in once, on first use)."""
        if self._token is None:
            status, body = self.api(
                "POST", "/api/v1/login", {"username": "admin", "password": ADMIN_PASSWORD}, auth=None
            )
            assert status == 200, f"login -> {status}: {body!r}"
            self._token = body["token"]
        return self._token

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        *,
        auth: Any = "bearer",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, bytes, dict[str, str]]:
        """One HTTP request to the admin server -> (status, body, headers). ``auth``: "bearer" (admin's
        token), None (no credentials), ("KEY", "SECRET") (an API key, HTTP Basic) or a header value."""
        hdrs = dict(headers or {})
        if auth == "bearer":
            hdrs["Authorization"] = "Bearer " + self.token()
        elif isinstance(auth, tuple):
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        elif isinstance(auth, str):
            hdrs["Authorization"] = auth
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        url = f"http://{self.admin_host}:{self.admin_port}{path}"
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as e:
            body = e.read()
            out = e.code, body, dict(e.headers)
            e.close()
            return out

    def api(
        self, method: str, path: str, body: Any = None, *, auth: Any = "bearer", raw: bytes | None = None
    ) -> tuple[int, Any]:
        """A JSON API call -> (status, decoded JSON body or None when empty)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        status, out, _ = self.request(method, path, data, auth=auth)
        return status, (json.loads(out) if out else None)

    def http_get(self, path: str, timeout: float = 5.0, auth: Any = "bearer") -> tuple[int, bytes]:
        status, body, _ = self.request("GET", path, auth=auth, timeout=timeout)
        return status, body

    def get_json(self, path: str) -> Any:
        status, body = self.http_get(path)
        assert status == 200, f"GET {path} -> {status}: {body[:500]!r}"
        return json.loads(body)

    def stats(self) -> dict[str, Any]:
        return self.get_json("/api/v1/stats")

    def stat(self, *path: str) -> int:
        """One counter, e.g. ``stat("deliveries_dropped", "queue_full")``; a missing key counts as 0."""
        node: Any = self.stats()
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return 0
            node = node[key]
        return int(node)

    def wait_stat(self, path: tuple[str, ...], predicate: Callable[[int], bool], timeout: float = 5.0) -> int:
        """Poll a counter until ``predicate(value)``; returns the last value (assert on it)."""
        last = [0]

        def check() -> bool:
            last[0] = self.stat(*path)
            return predicate(last[0])

        wait_until(check, timeout=timeout, interval=0.05)
        return last[0]

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    # -- lifecycle -----------------------------------------------------------------------
    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the broker to exit by itself (raises subprocess.TimeoutExpired)."""
        self.returncode = self.proc.wait(timeout)
        self._close_stderr()
        return self.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Signal the broker and wait; kills it if it does not exit in time. Returns the exit code
        (None if it had to be killed)."""
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                killed = True
        self._close_stderr()
        self.returncode = None if killed else self.proc.returncode
        return self.returncode

    def _close_stderr(self) -> None:
        # Only close the pipe once the drain thread saw EOF: closing a file another thread is
        # blocked reading deadlocks on its buffer lock (a grandchild may still hold the pipe).
        self._drain.join(timeout=2)
        if not self._drain.is_alive() and self.proc.stderr and not self.proc.stderr.closed:
            self.proc.stderr.close()

    def __repr__(self) -> str:
        return f"<Broker pid={self.proc.pid} mqtt={self.host}:{self.mqtt_port} admin={self.admin_port}>"


class BrokerFactory:
    """Callable fixture value: ``broker(config_text=None, env=None, extra_args=None) -> Broker``."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.instances: list[Broker] = []

    def __call__(
        self,
        config: str | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        **kw: str,
    ) -> Broker:
        b = Broker(self.tmp_dir, config=config, env=env, extra_args=extra_args, **kw)
        self.instances.append(b)
        return b

    def stop_all(self) -> None:
        for b in self.instances:
            b.stop()

    def popen(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``python -m mqhook ARGS`` without waiting for a listening line (e.g. bad configs).
        The caller must wait for or kill the process; output is captured as text."""
        return subprocess.Popen(
            [PYTHON, "-m", "mqhook", *args],
            cwd=ROOT,
            env=broker_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Function-scoped factory: start brokers with custom config; all are stopped at teardown."""
    factory = BrokerFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def default_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker with the default config, shared by the tests of a module."""
    b = Broker(tmp_path_factory.mktemp("default-broker"))
    yield b
    b.stop()


_UID_COUNTER = iter(range(1, 1 << 30))


@pytest.fixture
def uid(request: pytest.FixtureRequest) -> str:
    """A short unique token for client ids and topic prefixes, derived from the test name."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[-40:]
    return f"{name}-{os.getpid() % 10000}-{next(_UID_COUNTER)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """On failure, attach the stderr of every broker the test used to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when not in ("setup", "call") or not rep.failed:
        return
    brokers: list[Broker] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Broker):
            brokers.append(value)
        elif isinstance(value, BrokerFactory):
            brokers.extend(value.instances)
    for b in brokers:
        text = b.stderr_text()
        if len(text) > 20000:
            text = "...\n" + text[-20000:]
        rep.sections.append((f"broker stderr {b!r}", text))
