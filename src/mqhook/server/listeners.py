"""The MQTT listeners: ``mqtt.bind`` (plain TCP, named "default") and each ``[[listeners]]`` entry.

One ``Listener`` per configured address, of one of four types:

- ``tcp``: ``mqhook.server.tcp.MqttProtocol`` on the accepted socket;
- ``tls``: the TLS handshake first (``mqhook.server.tls``), then the same protocol on the TLS
  transport;
- ``ws``: ``mqhook.server.ws.WsProtocol``, MQTT in binary WebSocket frames after an HTTP upgrade
  on ``path`` with the ``mqtt`` subprotocol;
- ``wss``: the TLS handshake, then the WebSocket upgrade.

Every type gives the broker the same ``Link``. Each listener counts, in its ``ListenerStats``:
the connections open on it (after the TLS handshake and the WebSocket upgrade), those accepted
since start, and the refusals by reason (``max_connections``: a CONNECT beyond the listener's own
limit; ``tls_handshake``: a failed or timed-out handshake; ``ws_upgrade``: an HTTP request that
was not a valid MQTT WebSocket upgrade). ``EdgeStats`` is the broker's ``Stats`` with these
added to its snapshot, so ``GET /api/v1/stats`` shows them under ``listeners``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mqhook.broker.stats import Stats
from mqhook.config import DEFAULT_LISTENER, Config, ListenerConfig, listener_name, parse_bind
from mqhook.server.tcp import MqttProtocol
from mqhook.server.tls import TlsServer, server_context
from mqhook.server.ws import WsProtocol

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker

__all__ = ["REFUSAL_REASONS", "EdgeStats", "Listener", "ListenerStats", "listeners_of"]

log = logging.getLogger("mqhook.server")

REFUSAL_REASONS = ("max_connections", "tls_handshake", "ws_upgrade")
BACKLOG = 1024


class ListenerStats:
    """One listener's counters (plain ints, bumped by its protocols)."""

    __slots__ = ("accepted", "bind", "connections", "max_connections", "name", "path", "refused", "type")

    def __init__(self, name: str, type: str, bind: str, max_connections: int, path: str | None = None) -> None:
        self.name = name
        self.type = type
        self.bind = bind  # as configured until started, then the address bound
        self.path = path  # ws and wss
        self.max_connections = max_connections  # 0: no limit of its own
        self.connections = 0  # open now (past the TLS handshake and the WebSocket upgrade)
        self.accepted = 0  # opened since start
        self.refused = dict.fromkeys(REFUSAL_REASONS, 0)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "bind": self.bind,
            "connections": self.connections,
            "max_connections": self.max_connections,
            "accepted": self.accepted,
            "refused": dict(self.refused),
        }
        if self.path is not None:
            out["path"] = self.path
        return out


class EdgeStats(Stats):
    """The broker's counters plus each listener's (``listeners`` in the snapshot)."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners: dict[str, ListenerStats] = {}

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        out["listeners"] = {name: lst.snapshot() for name, lst in self.listeners.items()}
        return out


def listeners_of(config: Config) -> list[tuple[str, ListenerConfig]]:
    """(field path, settings) of every listener: ``mqtt.bind`` first (unless ""), then ``[[listeners]]``."""
    out: list[tuple[str, ListenerConfig]] = []
    if config.mqtt.bind:
        out.append(("$.mqtt.bind", ListenerConfig(type="tcp", bind=config.mqtt.bind, name=DEFAULT_LISTENER)))
    out.extend((f"$.listeners[{i}]", lst) for i, lst in enumerate(config.listeners))
    return out


class Listener:
    """One listening address of one type; ``start`` binds it, ``close`` stops accepting."""

    def __init__(self, broker: Broker, settings: ListenerConfig, path: str, reuse_port: bool = False) -> None:
        self.broker = broker
        self.reuse_port = reuse_port  # SO_REUSEPORT: `mqhook run --workers N` shares the port between workers
        self.settings = settings
        self.path = path  # the field path in the config: "$.mqtt.bind" or "$.listeners[N]"
        self.name = listener_name(settings)
        ws_path = settings.ws_path if settings.type in ("ws", "wss") else None
        self.stats = ListenerStats(self.name, settings.type, settings.bind, settings.max_connections, ws_path)
        # Built now, so a key or certificate that does not load stops start-up naming its field.
        self._context = server_context(settings, path) if settings.is_tls else None
        self.server: asyncio.AbstractServer | None = None
        self.address = ""

    @property
    def url(self) -> str:
        """e.g. ``wss://0.0.0.0:8084/mqtt``."""
        suffix = self.stats.path or ""
        return f"{self.settings.type}://{self.address}{suffix}"

    def _factory(self, loop: asyncio.AbstractEventLoop) -> Callable[[], asyncio.BaseProtocol]:
        broker, stats, settings = self.broker, self.stats, self.settings
        make: Callable[[], MqttProtocol]
        if settings.type in ("ws", "wss"):
            ws_path = settings.ws_path

            def make() -> MqttProtocol:
                protocol = WsProtocol(broker, loop, stats, ws_path)
                protocol.cert_as_username = settings.peer_cert_as_username
                return protocol

        else:

            def make() -> MqttProtocol:
                protocol = MqttProtocol(broker, loop, stats)
                protocol.cert_as_username = settings.peer_cert_as_username
                return protocol

        if self._context is None:
            return make
        return TlsServer(loop, self._context, broker.config.idle_timeout, stats, make)

    async def start(self) -> None:
        """Bind; raises OSError as ``create_server`` does."""
        loop = asyncio.get_running_loop()
        host, port = parse_bind(self.settings.bind, self.path + ("" if self.path == "$.mqtt.bind" else ".bind"))
        self.server = await loop.create_server(
            self._factory(loop), host, port, backlog=BACKLOG, reuse_address=True, reuse_port=self.reuse_port or None
        )
        sockname = self.server.sockets[0].getsockname()
        shost, sport = sockname[:2]
        self.address = f"[{shost}]:{sport}" if ":" in shost else f"{shost}:{sport}"
        self.stats.bind = self.address
        log.info("listener %s: %s", self.name, self.url)

    def close(self) -> None:
        """Stop accepting (open connections are the broker's to end)."""
        if self.server is not None:
            self.server.close()
