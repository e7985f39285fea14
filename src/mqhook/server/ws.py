"""MQTT over WebSocket (``ws`` and ``wss`` listeners): ``WsProtocol``, an ``MqttProtocol`` that
unframes what it reads and frames what it writes, with wsproto (sans-I/O: RFC 6455 framing and
the HTTP/1.1 upgrade, through h11).

- The upgrade: a GET on the listener's ``path`` offering the ``mqtt`` subprotocol (RFC 6455,
  MQTT 5 section 6) is accepted with ``Sec-WebSocket-Protocol: mqtt`` and no extension; anything
  else is answered with an HTTP error and closed: 400 for a request that is no WebSocket upgrade
  (a plain GET, say) or does not offer ``mqtt``, 404 for another path, and counted on the listener
  (``refused["ws_upgrade"]``). The upgrade must complete within ``mqtt.idle_timeout``, counted
  the same way if it does not. The MQTT connection (the broker's ``Connection``, its CONNECT
  deadline, the listener's ``connections``) starts once the upgrade is accepted.
- MQTT bytes travel in binary frames; a frame may hold several packets and a packet may span
  several frames (the payloads form one stream, decoded as TCP bytes are). A text frame closes
  the connection [MQTT-6.0.0-1] (close code 1003); a frame that breaks RFC 6455 closes it with
  the code wsproto gives (1002 mostly). Pings are answered; a Close from the client is answered,
  and the connection ends as when a TCP client closes.
- Out: what the connection writes in one loop tick leaves as one binary frame (the coalescing of
  ``MqttProtocol``). ``close`` sends a Close frame (1000) after the last frame.
- Everything else is ``MqttProtocol``'s: the Link, reading paused and resumed on the transport
  (TCP's flow control reaches the client through the frames), the write buffer limits passed on
  as ``pause_writing`` / ``resume_writing``, ``peername`` / ``sockname`` of the TCP socket.

Measured, it is the bottleneck of this path: wsproto's unframing is Python, about 7.9 us per
inbound frame (2.6 us per outbound frame, of which there is one per connection per loop tick).
With one PUBLISH per frame (as paho sends them), QoS 0 1 -> 1 costs the broker 10.6 us of CPU per
message over ws or wss against 3.1 us over tcp or tls (tls is uvloop's, in C). A compiled unframer
(unmasking is the hot part) would be the next step; TLS is not a cost worth chasing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from mqhook.errors import ProtocolError
from mqhook.mqtt import reason as R
from mqhook.server.tcp import MqttProtocol

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker
    from mqhook.server.listeners import ListenerStats

__all__ = ["SUBPROTOCOL", "WsProtocol"]

log = logging.getLogger("mqhook.server")

SUBPROTOCOL = "mqtt"
_CONNECTING = ConnectionState.CONNECTING
_OPEN = ConnectionState.OPEN
_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003


class WsProtocol(MqttProtocol):
    __slots__ = ("_close_code", "_path", "_upgrade_timer", "_upgraded", "_ws")

    def __init__(
        self,
        broker: Broker,
        loop: asyncio.AbstractEventLoop,
        listener: ListenerStats | None = None,
        path: str = "/mqtt",
    ) -> None:
        super().__init__(broker, loop, listener)
        self._ws = WSConnection(ConnectionType.SERVER)
        self._path = path
        self._upgraded = False
        self._upgrade_timer: asyncio.TimerHandle | None = None
        self._close_code = CLOSE_NORMAL

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport)  # the MQTT connection opens with the upgrade (_accept)
        self._upgrade_timer = self.loop.call_later(self.broker.config.idle_timeout, self._upgrade_timeout)

    def data_received(self, data: bytes) -> None:
        if not self._counted(data):
            return
        ws = self._ws
        if ws.state is not (_OPEN if self._upgraded else _CONNECTING):
            return  # refused, or closing: nothing more is read
        try:
            ws.receive_data(data)
        except RemoteProtocolError as exc:  # a broken HTTP request
            self._reject(400, f"expected a WebSocket upgrade on {self._path}: {exc}")
            return
        except UnicodeError as exc:  # wsproto decodes Host as IDNA, Connection and Sec-WebSocket-* as ASCII
            self._reject(400, f"a WebSocket upgrade header that does not decode: {exc}")
            return
        except LocalProtocolError:
            return
        self._pump()

    def _pump(self) -> None:
        """Handle what wsproto decoded: the upgrade request, frames, pings, a close."""
        chunks: list[bytes] = []
        fault: ProtocolError | None = None
        peer_closed = False
        try:
            if not self._upgraded:
                for event in self._ws.events():  # the handshake's events, then the frames' (below)
                    if type(event) is Request:
                        if not self._accept(event):
                            return
                        break
                if not self._upgraded:
                    return
            for event in self._ws.events():
                kind = type(event)
                if kind is BytesMessage:
                    chunks.append(event.data)  # type: ignore[attr-defined]
                elif kind is Ping:
                    self._send_control(event.response())  # type: ignore[attr-defined]
                elif kind is CloseConnection:
                    if self._ws.state is _REMOTE_CLOSING:
                        peer_closed = True
                    else:  # wsproto found a framing error: it says which code to close with
                        self._close_code = event.code  # type: ignore[attr-defined]
                        fault = ProtocolError(R.MALFORMED_PACKET, f"WebSocket: {event.reason or event.code}")  # type: ignore[attr-defined]
                    break
                elif kind is TextMessage:
                    self._close_code = CLOSE_UNSUPPORTED_DATA
                    fault = ProtocolError(R.MALFORMED_PACKET, "a text WebSocket frame; MQTT travels in binary frames")
                    break
        except RemoteProtocolError as exc:  # not a WebSocket upgrade (a plain GET, say)
            self._reject(400, f"expected a WebSocket upgrade on {self._path}: {exc}")
            return
        if chunks or fault is not None:
            self._feed(chunks[0] if len(chunks) == 1 else b"".join(chunks), fault)
        if peer_closed:
            self._peer_closed()

    def _accept(self, request: Request) -> bool:
        path = request.target.partition("?")[0]
        if path != self._path:
            self._reject(404, f"no MQTT WebSocket endpoint at {path}; it is at {self._path}")
            return False
        if SUBPROTOCOL not in request.subprotocols:
            offered = ", ".join(request.subprotocols) or "none"
            self._reject(400, f"the WebSocket subprotocol {SUBPROTOCOL!r} is required (offered: {offered})")
            return False
        self._write_raw(self._ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
        if self._upgrade_timer is not None:
            self._upgrade_timer.cancel()
            self._upgrade_timer = None
        self._upgraded = True
        self.last_rx = self.broker.clock.time()
        self._open()
        return True

    def _reject(self, status: int, text: str) -> None:
        """Answer the upgrade request with ``status`` and close; counted on the listener."""
        if self.listener is not None:
            self.listener.refused["ws_upgrade"] += 1
        log.info("WebSocket upgrade from %s refused (%d): %s", self.peername, status, text)
        body = (text + "\n").encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            out = self._ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
            out += self._ws.send(RejectData(data=body))
        except LocalProtocolError:  # the request was too broken to answer in HTTP
            out = b""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if out:
                transport.write(out)
            transport.close()

    def _upgrade_timeout(self) -> None:
        self._upgrade_timer = None
        if self._upgraded:
            return
        if self.listener is not None:
            self.listener.refused["ws_upgrade"] += 1
        log.info("WebSocket upgrade from %s: none within %ss; closed", self.peername, self.broker.config.idle_timeout)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    def _peer_closed(self) -> None:
        """The client's Close frame: answer it, then close as for a TCP client that closed."""
        self._flush()
        conn = self._ws.connection
        transport = self.transport
        if conn is not None and conn.state is _REMOTE_CLOSING:
            self._write_raw(conn.send(CloseConnection(code=CLOSE_NORMAL)))
        if transport is not None and not transport.is_closing():
            transport.close()  # connection_lost follows: the connection ends as on a TCP close

    def _send_control(self, event: object) -> None:
        with contextlib.suppress(LocalProtocolError):
            self._write_raw(self._ws.send(event))  # type: ignore[arg-type]

    def _write_raw(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not transport.is_closing() and self._linger is None:
            transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upgrade_timer is not None:
            self._upgrade_timer.cancel()
            self._upgrade_timer = None
        if self._upgraded:
            super().connection_lost(exc)

    def pause_writing(self) -> None:
        if self._upgraded:
            self.conn.pause_writing()

    def resume_writing(self) -> None:
        if self._upgraded:
            self.conn.resume_writing()

    # -- Link -------------------------------------------------------------------

    def _flush(self) -> None:
        """What was written this tick, as one binary frame (after a pending durable commit)."""
        out = self._out
        if not out:
            return
        barrier = self._barrier
        if barrier.pending:
            if not self._flush_pending:
                self._flush_pending = True
                barrier.wait(self._flush_tick)
            return
        self.stats.bytes_sent += self._out_size
        self._out_size = 0
        transport = self.transport
        conn = self._ws.connection
        if (
            transport is not None
            and conn is not None
            and conn.state is _OPEN
            and not transport.is_closing()
            and self._linger is None
        ):
            transport.write(conn.send(BytesMessage(data=out[0] if len(out) == 1 else b"".join(out))))
        out.clear()

    def close(self) -> None:
        """The last frames, a Close frame, then ``MqttProtocol.close`` (FIN and linger, or TLS close)."""
        if self._barrier.pending and self._out:  # the last frames wait for a durable commit, so does the close
            self._barrier.wait(self.close)
            return
        self._flush()
        conn = self._ws.connection
        transport = self.transport
        if (
            conn is not None
            and conn.state in (_OPEN, _REMOTE_CLOSING)
            and transport is not None
            and not transport.is_closing()
            and self._linger is None
        ):
            transport.write(conn.send(CloseConnection(code=self._close_code)))
        super().close()
