"""A fake Link and a manual clock: drive the broker core without sockets or sleeping."""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from mqhook.broker.broker import Broker
from mqhook.broker.connection import AWAIT_CONNECT, Connection
from mqhook.broker.settings import MqttConfig
from mqhook.broker.stats import Stats
from mqhook.errors import ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt.codec import Decoder
from mqhook.mqtt.encode import encode


class Timer:
    def __init__(self, clock: ManualClock, when: float, cb: Any, args: tuple[Any, ...]) -> None:
        self.when, self.cb, self.args, self.cancelled = when, cb, args, False
        self.clock = clock

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """time() and call_later() for the broker; advance() runs due timers in order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, cb: Any, *args: Any) -> Timer:
        timer = Timer(self, self.now + delay, cb, args)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            when, _, timer = heapq.heappop(self._heap)
            self.now = when
            if not timer.cancelled:
                timer.cb(*timer.args)
        self.now = end

    def pending(self) -> list[float]:
        """When each live (not cancelled, not yet run) timer is due, soonest first."""
        return sorted(when for when, _, timer in self._heap if not timer.cancelled)


_DEFERRED: list[Any] = []  # shared by every FakeLink, like one event loop's ready queue


class FakeLink:
    """Collects what the connection writes and decodes it as a client would."""

    def __init__(self, level: int, clock: ManualClock) -> None:
        self.peername = "127.0.0.1:50000"
        self.sockname = "127.0.0.1:1883"
        self.cert_username: str | None = None
        self.closed = False
        self.reading = True
        self.last_rx = clock.time()
        self._decoder = Decoder(protocol_level=level)
        self.received: list[Any] = []

    def write(self, data: bytes) -> None:
        self.received.extend(self._decoder.feed(data))

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def defer(self, callback: Any) -> None:
        """No event loop here: deferred callbacks run at once, in order, one after the other (a
        callback deferred while another runs waits for it), as the loop would run them."""
        _DEFERRED.append(callback)
        if len(_DEFERRED) == 1:
            while _DEFERRED:
                _DEFERRED[0]()
                _DEFERRED.pop(0)

    def take(self) -> list[Any]:
        out, self.received = self.received, []
        return out


class Client:
    """One fake client connection on a broker."""

    def __init__(self, broker: Broker, level: int = 5) -> None:
        self.level = level
        self.clock: Any = broker.clock
        self.link = FakeLink(level, self.clock)
        self.conn = Connection(broker, self.link)
        self.decoder: Decoder | None = None  # the server side's stream decoder, made by ``feed``

    def send(self, packet: Any) -> None:
        # Round-trip through the wire format, as the server edge would, which notes when bytes arrived.
        self.link.last_rx = self.clock.time()
        data = encode(packet, self.level)
        decoder = Decoder(protocol_level=self.level)
        for pkt in decoder.feed(data):
            try:
                self.conn.handle(pkt)
            except ProtocolError as exc:
                self.conn.protocol_error(exc)

    def feed(self, data: bytes) -> None:
        """Raw bytes as the server edge gets them (any split): noted as arrived, decoded by one
        decoder kept for the connection, each complete packet handled. The decoder learns the
        version from a CONNECT fed here, or uses the client's if ``send`` already connected."""
        self.link.last_rx = self.clock.time()
        if self.decoder is None:
            level = None if self.conn.state == AWAIT_CONNECT else self.level
            self.decoder = Decoder(self.conn.config.max_packet_size, protocol_level=level)
        try:
            for pkt in self.decoder.feed(data):
                self.conn.handle(pkt)
        except ProtocolError as exc:
            self.conn.protocol_error(exc)

    def connect(self, client_id: str, clean: bool = True, **kw: Any) -> P.Connack:
        self.send(P.Connect(client_id, proto_level=self.level, clean_start=clean, **kw))
        ack = self.link.take()[0]
        assert isinstance(ack, P.Connack)
        return ack


def make_broker(**config: Any) -> tuple[Broker, ManualClock]:
    clock = ManualClock()
    return Broker(MqttConfig(**config), Stats(), clock), clock
