"""Brokers started by ``mqhook bench`` itself: a fresh mqhook, and Debian's mosquitto.

Both run on 127.0.0.1 in their own session (Ctrl-C reaches only the bench, which stops them)
with SIGTERM on the bench's death (``PR_SET_PDEATHSIG``); ``stop()`` sends SIGTERM, then
SIGKILL after a few seconds. Their stderr is drained by a thread into the last 200 lines.

mosquitto's configuration (``MOSQUITTO_CONF``) mirrors mqhook's defaults so the comparison
is fair: the same per-client outbound window (``max_inflight_messages`` = mqhook
``mqtt.max_inflight``, 32), the same per-session queue (``max_queued_messages`` =
``mqtt.max_queued_messages``, 1000, also mosquitto's own default; both read from mqhook's
``MqttConfig()``), TCP_NODELAY as mqhook sets it on every connection (``set_tcp_nodelay true``;
mosquitto's default is false, and Nagle then adds milliseconds of latency at moderate rates, while
as-fast-as-possible throughput gains a little), no persistence (mqhook keeps nothing on disk),
and logging of errors and warnings only (mqhook is started with ``--log-level warning``).
``--max-queued`` / ``--max-inflight`` of ``mqhook bench`` append ``max_queued_messages N`` /
``max_inflight_messages N`` (and give the started mqhook the same through ``MQHOOK_ENV``), then
``--mosquitto-option LINE`` appends its lines (a later line wins), e.g. ``set_tcp_nodelay false``.

The effective settings that matter for a comparison (``SETTINGS``: outbound window, queue bound,
TCP_NODELAY) of each broker started here are known: ``BrokerProcess.settings``, mqhook's from its
configuration as it loads it (embedded defaults, ``--config`` file, the ``MQHOOK_*`` environment it
is given), mosquitto's from its final config file (last line wins). ``settings_differ`` compares
two of them; a broker the bench did not start has ``None`` (unknown), never a guess.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec.inspect as mi

from mqhook.broker.settings import MqttConfig
from mqhook.loadtest.rpc import child_env
from mqhook.loadtest.stats import cpu_seconds

READY = re.compile(r"listening mqtt=(\S+):(\d+) admin=(\S+):(\d+)")
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
MOSQUITTO_CONF = """\
# written by mqhook bench: limits as mqhook's defaults (see mqhook/loadtest/brokers.py)
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages {max_inflight}
max_queued_messages {max_queued}
set_tcp_nodelay true
max_keepalive 65535
log_dest stderr
log_type error
log_type warning
connection_messages false
"""


# The settings a comparison states for each broker: max_inflight (outbound QoS 1/2 window per
# client), max_queued (messages queued per session), nodelay (TCP_NODELAY). Values: an int, None
# for unlimited (mosquitto's 0), a bool for nodelay.
SETTINGS = ("max_inflight", "max_queued", "nodelay")
MQHOOK_ENV = {"max_inflight": "MQHOOK_MQTT__MAX_INFLIGHT", "max_queued": "MQHOOK_MQTT__MAX_QUEUED_MESSAGES"}
MOSQUITTO_KEYS = {"max_inflight": "max_inflight_messages", "max_queued": "max_queued_messages"}
# mosquitto's own defaults, for a config without the line (MOSQUITTO_CONF has every one of them).
MOSQUITTO_DEFAULTS = {"max_inflight_messages": "20", "max_queued_messages": "1000", "set_tcp_nodelay": "false"}
# MQTT packet ids are 16 bits (1..65535): no client can have more QoS 1/2 messages in flight, so a
# window this large is the same as an unlimited one.
PACKET_IDS = 65535


def mqhook_bounds(field: str) -> tuple[int, int]:
    """(least, greatest) value mqhook accepts for ``mqtt.FIELD`` (from ``MqttConfig``'s constraints)."""
    info = mi.type_info(MqttConfig)
    assert isinstance(info, mi.StructType)
    tp = next(f.type for f in info.fields if f.name == field)
    assert isinstance(tp, mi.IntType) and tp.ge is not None and tp.le is not None
    return tp.ge, tp.le


def _config_arg(args: Sequence[str]) -> str | None:
    """The ``--config FILE`` among ``mqhook run`` arguments (parsed as mqhook parses it)."""
    import argparse

    p = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    p.add_argument("--config")
    try:
        ns, _ = p.parse_known_args(list(args))
    except (argparse.ArgumentError, SystemExit):
        return None
    return ns.config


def mqhook_settings(environ: Mapping[str, str], args: Sequence[str] = ()) -> dict[str, Any] | None:
    """The settings of ``mqhook run ARGS`` started with ``environ``: its configuration loaded as
    it loads it (``MqttConfig``'s defaults < ``--config`` file < ``MQHOOK_*`` environment); TCP_NODELAY
    is always on. None when that configuration does not load (mqhook would not start)."""
    from mqhook import config
    from mqhook.errors import ConfigError

    try:
        mqtt = config.load(_config_arg(args), environ=environ, warn=lambda _message: None).mqtt
    except ConfigError:  # a bad file or variable (or a file gone since): unknown, not a guess
        return None
    return {"max_inflight": mqtt.max_inflight, "max_queued": mqtt.max_queued_messages, "nodelay": True}


def mosquitto_settings(conf: str) -> dict[str, Any] | None:
    """The settings of a mosquitto config file's text: the last line of each key wins, mosquitto's
    defaults without one; 0 (no maximum) is None. None when a value is not a number."""
    last = dict(MOSQUITTO_DEFAULTS)
    for line in conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in last:
            last[words[0]] = words[1]
    out: dict[str, Any] = {}
    for key, name in MOSQUITTO_KEYS.items():
        try:
            out[key] = int(last[name]) or None
        except ValueError:
            return None
    out["nodelay"] = last["set_tcp_nodelay"] == "true"
    return out


def _same(key: str, a: Any, b: Any) -> bool:
    if key == "max_inflight":  # a window of every packet id is an unlimited one
        a, b = (None if v is None or v >= PACKET_IDS else v for v in (a, b))
    return bool(a == b)


def settings_differ(named: Sequence[tuple[str, dict[str, Any] | None]]) -> list[dict[str, Any]] | None:
    """What differs between the brokers' settings: ``[{"setting": "max_queued", "values": {name: value,
    ...}}]``, [] when nothing does, None when a broker's settings are unknown."""
    if not named or any(s is None for _, s in named):
        return None
    out = []
    for key in SETTINGS:
        values = [s.get(key) for _, s in named if s is not None]
        if any(not _same(key, values[0], v) for v in values[1:]):
            out.append({"setting": key, "values": {name: s.get(key) for name, s in named if s is not None}})
    return out


def format_setting(key: str, value: Any) -> str:
    """``32``, ``unlimited`` (None), ``on`` / ``off``."""
    if key == "nodelay":
        return "on" if value else "off"
    return "unlimited" if value is None else str(value)


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

    def __init__(
        self,
        name: str,
        cmd: list[str],
        ready: re.Pattern[str] | None,
        tmpdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.tmpdir = tmpdir
        # the environment it was started with: the bench's, plus ``env``
        self.env = {**child_env(), **(env or {})}
        # what the bench knows of its settings (see SETTINGS); None: unknown
        self.settings: dict[str, Any] | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.host = "127.0.0.1"
        self.port = 0
        self.admin = ""  # mqhook: the admin API's "host:port", from the listening line
        self.admin_password = ""  # mqhook: the password of its administrator ``admin``
        self._token = ""
        self._ready = threading.Event()
        self._pattern = ready
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=self.env,
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

    def admin_json(self, path: str, timeout: float = 10.0) -> Any:
        """GET an admin API path of a started mqhook as ``admin`` (logged in on first use) -> its JSON."""
        if not self._token:
            login = json.dumps({"username": "admin", "password": self.admin_password}).encode()
            req = urllib.request.Request(f"http://{self.admin}/api/v1/login", data=login, method="POST")
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                self._token = json.loads(resp.read())["token"]
        req = urllib.request.Request(f"http://{self.admin}{path}", headers={"Authorization": f"Bearer {self._token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

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
    extra_args: list[str] | None = None,
    log_level: str = "warning",
    timeout: float = 20.0,
    env: Mapping[str, str] | None = None,
) -> BrokerProcess:
    """``python -m mqhook run`` on 127.0.0.1 with free ports; ready when it prints its listening line.
    ``env``: variables added to (or replacing) the bench's environment, e.g. ``MQHOOK_ENV`` ones."""
    tmpdir = tempfile.mkdtemp(prefix="mqhook-bench-data-")
    cmd = [sys.executable, "-m", "mqhook", "run", "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"]
    cmd += ["--log-level", log_level, "--data-dir", tmpdir, *(extra_args or [])]
    password = secrets.token_urlsafe(16)
    broker = BrokerProcess(
        "mqhook", cmd, READY, tmpdir, env={"MQHOOK_ADMIN__DEFAULT_PASSWORD": password, **(env or {})}
    )
    broker.admin_password = password
    broker.wait_ready(timeout)
    broker.settings = mqhook_settings(broker.env, extra_args or [])
    return broker


def mosquitto_config(port: int, extra: list[str] | None = None) -> str:
    """``MOSQUITTO_CONF`` for ``port`` with mqhook's default window and queue (``MqttConfig()``);
    ``extra`` lines are appended (a later line wins)."""
    defaults = MqttConfig()
    conf = MOSQUITTO_CONF.format(port=port, max_inflight=defaults.max_inflight, max_queued=defaults.max_queued_messages)
    return conf + "".join(line + "\n" for line in extra or [])


def start_mosquitto(
    path: str | None = None, port: int = 0, timeout: float = 10.0, extra: list[str] | None = None
) -> BrokerProcess:
    """mosquitto with ``MOSQUITTO_CONF`` in a temporary directory; ready when its port accepts."""
    binary = find_mosquitto(path)
    port = port or free_port()
    tmpdir = tempfile.mkdtemp(prefix="mqhook-bench-mosquitto-")
    conf = Path(tmpdir) / "mosquitto.conf"
    text = mosquitto_config(port, extra)
    conf.write_text(text)
    conf.chmod(0o644)
    os.chmod(tmpdir, 0o755)  # mosquitto may drop privileges to its own user
    broker = BrokerProcess("mosquitto", [binary, "-c", str(conf)], None, tmpdir)
    broker.port = port
    if not wait_port("127.0.0.1", port, timeout) or broker.proc.poll() is not None:
        broker.stop()
        tail = "\n    ".join(list(broker.lines)[-15:])
        raise BrokerStartError(f"mqhook bench: mosquitto did not accept on port {port} in {timeout}s:\n    {tail}")
    broker.settings = mosquitto_settings(text)
    return broker
