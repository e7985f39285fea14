"""The MQTT TCP listener: the only code that touches MQTT sockets.

Each accepted socket gets an ``asyncio.Protocol`` (``MqttProtocol``) that implements the broker's
``Link``: bytes go to the sans-I/O decoder, each packet to the connection's ``handle``, and what
the connection writes leaves through the transport. This module owns the socket side only:

- writes are coalesced: every packet written during one loop tick leaves in one transport write
  (sooner once ``FLUSH_BYTES`` wait);
- a busy connection yields the loop after ``TURN_PACKETS`` packets or ``READ_BUDGET`` bytes, so
  other sockets, timers and the webhook senders get their turn;
- reading stops while the connection asks (``pause_reading``, backpressure) and its packets wait,
  in order, until ``resume_reading``;
- the transport's write buffer limits are passed on as ``pause_writing`` / ``resume_writing``;
- bytes that do not decode end the connection after the packets before them are handled;
- a close is graceful: what was written (a DISCONNECT with its reason, say) leaves, then a FIN,
  and input is read and discarded until the peer closes (at most ``LINGER_S`` and
  ``LINGER_BYTES``), so the peer reads our last packet instead of a reset;
- a listener's own ``max_connections`` (``mqhook.server.listeners``): the first CONNECT of a socket
  beyond it is refused with CONNACK 0x97 (3 in 3.1.1), as the broker refuses beyond its own.

TLS and WebSocket listeners reuse this class: TLS below it (the transport is asyncio's TLS
transport, ``mqhook.server.tls``), WebSocket as a subclass that unframes before ``_feed`` and
frames in ``_flush`` (``mqhook.server.ws``).

What a packet means, timers, sessions and events are the connection's business
(``mqhook.broker.connection``); this module touches no hook, no session and no timer of the broker.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mqhook.broker.connection import Connection
from mqhook.errors import ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R
from mqhook.mqtt.codec import Decoder

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker
    from mqhook.server.listeners import ListenerStats

__all__ = ["MqttProtocol", "start_listener"]

log = logging.getLogger("mqhook.server")

# Coalesced writes leave at the end of the loop tick, or as soon as this much is waiting:
# libuv may read megabytes from one publisher within a single tick, and a subscriber's
# copies must reach its socket meanwhile, not pile up in our list.
FLUSH_BYTES = 65536
# A busy connection yields to the loop after handling this many packets (a few ms of work) or
# reading this many bytes (libuv reads a busy socket up to 32 times per loop iteration): it
# pauses until the next iteration, so other sockets, timers and the webhook senders get their
# turn. Measured: with 2800 packets per turn a webhook's requests waited ~25 ms per loop step
# while a publisher was being read, and delivered 8k events/s instead of 60k+.
TURN_PACKETS = 256
READ_BUDGET = 262144
# A closed connection waits this long (and discards at most this much input) for the peer's FIN:
# closing a socket with unread input makes the kernel send a reset, which destroys what we sent last.
LINGER_S = 2.0
LINGER_BYTES = 1 << 20


def _addr(info: Any) -> str:
    if not info:
        return "undefined"
    # EMQX prints IPv6 peers without brackets ("::1:52918"); webhook receivers expect that form.
    return f"{info[0]}:{info[1]}"


class MqttProtocol(asyncio.Protocol):
    conn: Connection  # made in connection_made, once the peer is known

    __slots__ = (
        "_barrier",
        "_fault",
        "_flush_pending",
        "_gate",
        "_held",
        "_linger",
        "_linger_left",
        "_out",
        "_out_size",
        "_paused",
        "_quota",
        "_read_bytes",
        "broker",
        "cert_as_username",
        "conn",
        "decoder",
        "last_rx",
        "listener",
        "loop",
        "peername",
        "sockname",
        "stats",
        "transport",
    )

    def __init__(self, broker: Broker, loop: asyncio.AbstractEventLoop, listener: ListenerStats | None = None) -> None:
        self.broker = broker
        self.loop = loop
        self.listener = listener  # its counters; None: a bare protocol (tests)
        self.cert_as_username: str | None = None  # the listener's peer_cert_as_username ("cn", "dn")
        self._gate: ListenerStats | None = None  # set while the first CONNECT is to be checked against its limit
        self.stats = broker.stats
        self._barrier = broker.barrier
        self.transport: asyncio.Transport | None = None
        config = broker.config
        self.decoder = Decoder(config.max_packet_size, max_connect_size=config.max_connect_size)
        self.peername = "undefined"
        self.sockname = "undefined"
        self.last_rx = 0.0
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_pending = False
        self._held: list[Any] | None = None  # packets not handed over while reading is paused
        self._paused = False  # the connection asked us to stop reading
        self._read_bytes = 0  # since this connection last yielded to the loop
        self._quota = TURN_PACKETS  # packets it may still handle before it yields
        self._fault: ProtocolError | None = None  # bytes that did not decode, after the held packets
        self._linger: asyncio.TimerHandle | None = None  # set once closed: input is discarded until EOF
        self._linger_left = LINGER_BYTES

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport)
        self._open()

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        """Take the transport: socket options, write buffer limits, the addresses."""
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=self.broker.config.write_buffer_high)  # type: ignore[attr-defined]
        self.peername = _addr(transport.get_extra_info("peername"))
        # Interned: thousands of connections share one listener address.
        self.sockname = sys.intern(_addr(transport.get_extra_info("sockname")))
        self.last_rx = self.broker.clock.time()

    def _open(self) -> None:
        """The MQTT connection starts (at accept; after the upgrade on WebSocket): counted on its listener."""
        listener = self.listener
        if listener is not None:
            listener.connections += 1
            listener.accepted += 1
            if listener.max_connections:
                self._gate = listener
        self.conn = Connection(self.broker, self)

    def data_received(self, data: bytes) -> None:
        if self._counted(data):
            self._feed(data, None)

    def _counted(self, data: bytes) -> bool:
        """Count bytes read; False once closed: they are discarded until the peer's FIN (bounded)."""
        size = len(data)
        self.stats.bytes_received += size
        if self._linger is not None:
            self._linger_left -= size
            if self._linger_left < 0:
                self._abort()
            return False
        return True

    def _feed(self, data: bytes, fault: ProtocolError | None) -> None:
        """MQTT bytes in (a TCP read, or the payloads of WebSocket frames); ``fault``: the stream
        below broke after ``data`` (a bad WebSocket frame), handled like bytes that do not decode."""
        self.last_rx = self.broker.clock.time()
        self._read_bytes += len(data)
        packets, decode_fault = self.decoder.decode(data) if data else ([], None)
        if decode_fault is not None:
            fault = decode_fault
        if fault is not None:  # handle what came before the fault, then close with it
            self._fault = fault
            self.transport.pause_reading()  # type: ignore[union-attr]
        if self._held is not None:
            self._held.extend(packets)  # not handing over now: keep order behind what is held
        elif self._paused:
            self._hold(packets, 0)
        else:
            self._handle(packets)
        if self._out:
            # What this client's own packets made us answer (acks, a subscriber's window refilled by
            # its PUBACKs) leaves now, not after every other socket of this loop turn: the round
            # trip that paces a QoS 1/2 flow. Copies for other connections still wait for the turn's end.
            self._flush()

    def _handle(self, packets: list[Any]) -> None:
        """Hand the packets over in order; hold the rest when the connection asks us to pause, or
        when this connection's share of the loop turn is used up (until the next turn)."""
        stats = self.stats
        conn = self.conn
        if self._gate is not None and packets and self._refused(packets[0]):
            return
        quota = self._quota
        for i, packet in enumerate(packets):
            stats.packets_received[packet.type] += 1
            try:
                conn.handle(packet)
            except ProtocolError as exc:
                conn.protocol_error(exc)
                return
            except Exception as exc:  # a bug must cost one connection, never the broker
                conn.internal_error(exc)
                return
            if self._paused:
                self._quota = quota
                self._hold(packets, i + 1)
                return
            quota -= 1
            if not quota:
                quota = TURN_PACKETS
                if i + 1 < len(packets):
                    self._quota = quota
                    self._hold(packets, i + 1)
                    self.loop.call_soon(self._resume)
                    return
        self._quota = quota
        if self._fault is not None:
            fault, self._fault = self._fault, None
            conn.protocol_error(fault)
            return
        if self._read_bytes >= READ_BUDGET:
            self._hold(packets, len(packets))  # nothing left to hold: just yield the turn
            self.loop.call_soon(self._resume)

    def _refused(self, packet: Any) -> bool:
        """The first packet of a socket on a listener with its own ``max_connections``: a CONNECT
        beyond that limit is refused with CONNACK 0x97 (3 in 3.1.1) and counted on the listener."""
        listener = self._gate
        self._gate = None
        if listener is None or packet.type != P.CONNECT or listener.connections <= listener.max_connections:
            return False
        listener.refused["max_connections"] += 1
        self.stats.packets_received[packet.type] += 1
        self.conn.refuse_connect(
            R.QUOTA_EXCEEDED,
            f"the listener {listener.name} is at max_connections ({listener.max_connections} connections)",
            packet,
        )
        return True

    def _hold(self, packets: list[Any], start: int) -> None:
        self._held = packets[start:]
        self._read_bytes = 0
        if self._fault is None:  # after a fault reading is paused already
            self.transport.pause_reading()  # type: ignore[union-attr]

    def _resume(self) -> None:
        """The next loop turn, or the connection's ``resume_reading``: read on, handle what was held."""
        held = self._held
        transport = self.transport
        if self._paused or held is None or transport is None or transport.is_closing() or self._linger is not None:
            return
        self._held = None
        if self._fault is None:  # after a fault nothing more is read
            transport.resume_reading()
        self._handle(held)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.listener is not None:
            self.listener.connections -= 1
        self.stats.bytes_sent += self._out_size  # written, never flushed: counted as write() did before
        self._out_size = 0
        self._out.clear()
        self._held = None
        if self._linger is not None:
            self._linger.cancel()
        self.conn.connection_lost()

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()

    # -- Link -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        # bytes_sent is counted per flush (and in connection_lost), not per packet: a write per packet
        # would cost one more counter update each.
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= FLUSH_BYTES:
            self._flush()
        elif not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush_tick)

    def _flush_tick(self) -> None:
        self._flush_pending = False
        self._flush()

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        barrier = self._barrier
        if barrier.pending:  # a durable commit is due first (fsync = "always"): this output waits for it
            if not self._flush_pending:
                self._flush_pending = True
                barrier.wait(self._flush_tick)
            return
        self.stats.bytes_sent += self._out_size
        self._out_size = 0
        transport = self.transport
        if transport is not None and not transport.is_closing() and self._linger is None:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def close(self) -> None:
        """Send what is queued (a DISCONNECT, say) and a FIN; hand over no more packets; close once
        the peer has closed too, or after ``LINGER_S``. Output waiting for a durable commit (see
        ``_flush``) makes the close wait too."""
        if self._barrier.pending and self._out:
            self._barrier.wait(self.close)
            return
        self._flush()
        transport = self.transport
        if transport is None or transport.is_closing() or self._linger is not None:
            return
        self._held = None
        self._fault = None
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger = self.loop.call_later(LINGER_S, self._abort)
        transport.resume_reading()  # drain: the peer's unread bytes must not turn our close into a reset

    def _abort(self) -> None:
        """The peer did not close within the linger bounds."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    def defer(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon(callback)

    def pause_reading(self) -> None:
        """Hand over no packet after the current one until ``resume_reading``."""
        self._paused = True

    def resume_reading(self) -> None:
        """Read on from the next loop turn, held packets first."""
        self._paused = False
        if self._held is not None:
            self.loop.call_soon(self._resume)

    # -- for listeners ----------------------------------------------------------------------------

    def peercert(self) -> dict[str, Any] | None:
        """The client's certificate as ``ssl.SSLSocket.getpeercert`` gives it (TLS listeners with
        verify_peer, when the client sent one), else None."""
        transport = self.transport
        return None if transport is None else transport.get_extra_info("peercert") or None

    @property
    def cert_username(self) -> str | None:
        """The user name the client's verified certificate gives (``peer_cert_as_username``), or None."""
        if self.cert_as_username is None:
            return None
        cert = self.peercert()
        return None if cert is None else cert_subject_name(cert, self.cert_as_username)


_RDN_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "emailAddress": "emailAddress",
}


def cert_subject_name(cert: dict[str, Any], kind: str) -> str | None:
    """The subject's CN (``kind`` "cn") or its whole DN ("dn", e.g. ``C=SE,O=Acme,CN=dev-1``, in
    the certificate's order) of a certificate as ``getpeercert()`` gives it; None without a CN."""
    rdns = [(name, value) for rdn in cert.get("subject", ()) for name, value in rdn]
    if kind == "cn":
        return next((value for name, value in rdns if name == "commonName"), None)
    return ",".join(f"{_RDN_SHORT.get(name, name)}={value}" for name, value in rdns) or None


async def start_listener(broker: Broker, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: MqttProtocol(broker, loop), host, port, backlog=1024, reuse_address=True)
