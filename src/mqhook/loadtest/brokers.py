"""Brokers started by ``mqhook bench`` itself: a fresh mqhook, and Debian's mosquitto.

Both run on 127.0.0.1 in their own session (Ctrl-C reaches only the bench, which stops them)
with SIGTERM on the bench's death (``PR_SET_PDEATHSIG``); ``stop()`` sends SIGTERM, then
SIGKILL after a few seconds. Their stderr is drained by a thread into the last 200 lines.

mosquitto's configuration (``MOSQUITTO_CONF``) mirrors mqhook's defaults so the comparison
is fair: the same per-client outbound window (``max_inflight_messages 32`` = mqhook
``mqtt.max_inflight``), the same per-session queue (``max_queued_messages 1000`` =
``mqtt.max_queued_messages``; also mosquitto's own default), TCP_NODELAY as mqhook sets it
on every connection (``set_tcp_nodelay true``; mosquitto's default is false, and Nagle then adds
milliseconds of latency at moderate rates, while as-fast-as-possible throughput gains a little),
no persistence (mqhook keeps nothing on disk), and logging of errors and warnings only (mqhook
is started with ``--log-level warning``). ``--mosquitto-option LINE`` appends lines (a later line
wins), e.g. ``set_tcp_nodelay false`` or ``max_inflight_messages 0``.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mqhook.loadtest.rpc import child_env
from mqhook.loadtest.stats import cpu_seconds

READY = re.compile(r"listening mqtt=(\S+):(\d+) admin=(\S+):(\d+)")
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
MOSQUITTO_CONF = """\
# written by mqhook bench: limits as mqhook's defaults (see mqhook/loadtest/brokers.py)
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 32
max_queued_messages 1000
set_tcp_nodelay true
max_keepalive 65535
log_dest stderr
log_type error
log_type warning
connection_messages false
"""


class BrokerStartError(SystemExit):
    """A broker did not start: ``mqhook bench`` exits with the message; a script running many
    brokers (bench/e2e_webhook.py) catches it and goes on with the next."""


def _die_with_parent() -> None:  # pragma: no cover - runs between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for brokers that cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def find_mosquitto(path: str | None = None) -> str:
    """The mosquitto binary, or SystemExit with how to get it."""
    candidates = [path] if path else [*MOSQUITTO_PATHS, shutil.which("mosquitto") or ""]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise SystemExit(
        f"mqhook bench: mosquitto not found ({path or ', '.join(MOSQUITTO_PATHS)}); "
        "install it (Debian: apt-get install mosquitto) or pass --mosquitto PATH"
    )


class BrokerProcess:
    """A broker child process."""

    def __init__(self, name: str, cmd: list[str], ready: re.Pattern[str] | None, tmpdir: str | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.tmpdir = tmpdir
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.host = "127.0.0.1"
        self.port = 0
        self.admin = ""  # mqhook: the admin API's "host:port", from the listening line
        self._ready = threading.Event()
        self._pattern = ready
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=child_env(),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._thread = threading.Thread(target=self._drain, name=f"{name}-stderr", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if self._pattern is not None and not self._ready.is_set() and (m := self._pattern.search(line)):
                self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
                if m.re.groups >= 4:
                    self.admin = f"{m.group(3)}:{m.group(4)}"
                self._ready.set()
        self._ready.set()

    def cpu_seconds(self) -> float | None:
        """user + system CPU seconds of the broker so far (from /proc), None once it is gone."""
        return cpu_seconds(self.pid)

    def wait_ready(self, timeout: float) -> None:
        ok = self._ready.wait(timeout) and self.port and self.proc.poll() is None
        if not ok:
            self.stop()
            tail = "\n    ".join(list(self.lines)[-15:])
            raise BrokerStartError(f"mqhook bench: {self.name} did not start in {timeout}s; last output:\n    {tail}")

    def stop(self, timeout: float = 5.0) -> int | None:
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        self._thread.join(timeout=2)
        if not self._thread.is_alive() and proc.stderr is not None and not proc.stderr.closed:
            proc.stderr.close()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        return proc.returncode


def start_mqhook(
    extra_args: list[str] | None = None, log_level: str = "warning", timeout: float = 20.0
) -> BrokerProcess:
    """``python -m mqhook run`` on 127.0.0.1 with free ports; ready when it prints its listening line."""
    cmd = [sys.executable, "-m", "mqhook", "run", "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"]
    cmd += ["--log-level", log_level, *(extra_args or [])]
    broker = BrokerProcess("mqhook", cmd, READY)
    broker.wait_ready(timeout)
    return broker


def mosquitto_config(port: int, extra: list[str] | None = None) -> str:
    """``MOSQUITTO_CONF`` for ``port``; ``extra`` lines are appended (a later line wins)."""
    return MOSQUITTO_CONF.format(port=port) + "".join(line + "\n" for line in extra or [])


def start_mosquitto(
    path: str | None = None, port: int = 0, timeout: float = 10.0, extra: list[str] | None = None
) -> BrokerProcess:
    """mosquitto with ``MOSQUITTO_CONF`` in a temporary directory; ready when its port accepts."""
    binary = find_mosquitto(path)
    port = port or free_port()
    tmpdir = tempfile.mkdtemp(prefix="mqhook-bench-mosquitto-")
    conf = Path(tmpdir) / "mosquitto.conf"
    conf.write_text(mosquitto_config(port, extra))
    conf.chmod(0o644)
    os.chmod(tmpdir, 0o755)  # mosquitto may drop privileges to its own user
    broker = BrokerProcess("mosquitto", [binary, "-c", str(conf)], None, tmpdir)
    broker.port = port
    if not wait_port("127.0.0.1", port, timeout) or broker.proc.poll() is not None:
        broker.stop()
        tail = "\n    ".join(list(broker.lines)[-15:])
        raise BrokerStartError(f"mqhook bench: mosquitto did not accept on port {port} in {timeout}s:\n    {tail}")
    return broker
