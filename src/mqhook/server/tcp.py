"""The MQTT TCP listener: the only code that touches MQTT sockets.

Each connection is an ``asyncio.Protocol`` implementing the broker's ``Link``:
bytes go to the sans-I/O decoder, packets to the ``Connection`` state machine.
Writes are coalesced: every packet written during one loop tick leaves in one
``transport.writelines`` call. A full transport write buffer marks the
connection saturated (the session then queues, bounded, or drops QoS 0).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import TYPE_CHECKING, Any

from mqhook.broker.connection import Connection
from mqhook.errors import ProtocolError
from mqhook.mqtt import reason as R
from mqhook.mqtt.codec import Decoder

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker

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


def _addr(info: Any) -> str:
    if not info:
        return "undefined"
    # EMQX prints IPv6 peers without brackets ("::1:52918"); webhook receivers expect that form.
    return f"{info[0]}:{info[1]}"


class MqttProtocol(asyncio.Protocol):
    __slots__ = (
        "_flush_pending",
        "_held",
        "_keepalive",
        "_last_rx",
        "_out",
        "_out_size",
        "_quota",
        "_read_bytes",
        "_timer",
        "broker",
        "conn",
        "decoder",
        "loop",
        "peername",
        "sockname",
        "stats",
        "transport",
    )

    def __init__(self, broker: Broker, loop: asyncio.AbstractEventLoop) -> None:
        self.broker = broker
        self.loop = loop
        self.stats = broker.stats
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder(broker.config.max_packet_size)
        self.conn = Connection(broker, self)
        self.peername = "undefined"
        self.sockname = "undefined"
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_pending = False
        self._last_rx = 0.0
        self._keepalive = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._held: list[Any] | None = None  # packets waiting while reading is paused (backpressure, turn)
        self._read_bytes = 0  # since this connection last yielded to the loop
        self._quota = TURN_PACKETS  # packets it may still handle before it yields

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=self.broker.config.write_buffer_high)  # type: ignore[attr-defined]
        self.peername = _addr(transport.get_extra_info("peername"))
        # Interned: thousands of connections share one listener address and a few peer hosts.
        self.conn.peerhost = sys.intern(self.peername.rpartition(":")[0] or "undefined")
        self.sockname = sys.intern(_addr(transport.get_extra_info("sockname")))
        self.set_keepalive(self.broker.config.idle_timeout)  # until CONNECT sets the real keepalive

    def data_received(self, data: bytes) -> None:
        self._last_rx = self.loop.time()
        size = len(data)
        self.stats.bytes_received += size
        self._read_bytes += size
        try:
            packets = self.decoder.feed(data)
        except ProtocolError as exc:
            self.conn.protocol_error(exc)
            return
        if self._held is not None:
            self._held.extend(packets)  # paused: keep order behind what is already held
            return
        self._handle(packets)
        if self._held is None and self._read_bytes >= READ_BUDGET:
            self._hold(packets, len(packets))  # nothing left to hold: just yield the turn
            self.loop.call_soon(self._relieved)

    def _handle(self, packets: list[Any]) -> None:
        """Apply packets in order; hold the rest after the one that put a listener over its high
        water (until relief), or after this connection's share of the loop turn (until the next)."""
        stats = self.stats
        conn = self.conn
        hooks = self.broker.hooks
        quota = self._quota
        for i, packet in enumerate(packets):
            stats.packets_received[packet.type] += 1
            try:
                conn.handle(packet)
            except ProtocolError as exc:
                conn.protocol_error(exc)
                return
            except Exception as exc:  # a bug must cost one connection, never the broker
                log.exception("internal error on connection %s", self.peername)
                conn.protocol_error(ProtocolError(R.IMPLEMENTATION_SPECIFIC_ERROR, f"internal error: {exc!r}"))
                return
            if hooks.pressure:
                # A webhook with overflow = backpressure is over its high water: hold the rest of
                # this client's packets and stop reading its socket until the webhook drains.
                self._quota = quota
                self._hold(packets, i + 1)
                hooks.on_relief(self._relieved)
                return
            quota -= 1
            if not quota:
                quota = TURN_PACKETS
                if i + 1 < len(packets):
                    self._quota = quota
                    self._hold(packets, i + 1)
                    self.loop.call_soon(self._relieved)
                    return
        self._quota = quota

    def _hold(self, packets: list[Any], start: int) -> None:
        self._held = packets[start:]
        self._read_bytes = 0
        self.transport.pause_reading()  # type: ignore[union-attr]

    def _relieved(self) -> None:
        """Backpressure relief, or the next loop turn: read on, and handle what was held."""
        held, self._held = self._held, None
        transport = self.transport
        if transport is None or transport.is_closing() or held is None:
            return
        transport.resume_reading()
        if held:
            self._handle(held)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._out.clear()
        self.conn.connection_lost()

    def pause_writing(self) -> None:
        self.conn.saturated = True

    def resume_writing(self) -> None:
        self.conn.saturated = False
        session = self.conn.session
        if session is not None and session.conn is self.conn:
            session.drain()

    # -- Link -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        size = len(data)
        self.stats.bytes_sent += size
        self._out.append(data)
        self._out_size += size
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
        self._out_size = 0
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def close(self) -> None:
        """Flush what is queued (a DISCONNECT, say), then close; reading stops at once."""
        self._flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def set_keepalive(self, seconds: float) -> None:
        """Close the connection after ``seconds`` without a packet; 0 turns the check off."""
        self._keepalive = seconds
        self._last_rx = self.loop.time()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds > 0:
            self._timer = self.loop.call_later(seconds, self._check_keepalive)

    def _check_keepalive(self) -> None:
        if self._held is not None:  # we stopped reading, not the client: its pings wait in the socket
            self._last_rx = self.loop.time()
        idle = self.loop.time() - self._last_rx
        if idle >= self._keepalive:
            self._timer = None
            self.conn.keepalive_expired()
        else:
            self._timer = self.loop.call_later(self._keepalive - idle, self._check_keepalive)


async def start_listener(broker: Broker, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: MqttProtocol(broker, loop), host, port, backlog=1024, reuse_address=True)
