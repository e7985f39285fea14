"""One generator process's share of a scenario: its publishers, subscribers or connections.

The orchestrator (``runner``) drives a ``Worker`` through ``setup`` -> ``publish`` (or
``storm`` / ``idle``) -> ``finish``, either directly in its own event loop (``--procs 1``) or
in a child process (``python -m mqhook.loadtest.worker``, driven over ``rpc``). Every wait is
bounded by ``Scenario.stall`` (no progress) and by the run's hard deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import sys
import time
from typing import Any

from mqhook.loadtest import packets as pk
from mqhook.loadtest import rpc
from mqhook.loadtest.client import Counters, MqttClient, ProtocolFailure
from mqhook.loadtest.connections import connect_many
from mqhook.loadtest.scenario import Assignment, Scenario
from mqhook.loadtest.stats import N_BUCKETS, timeline_add

SENT, DISTINCT = Counters.SENT, Counters.DISTINCT


class Worker:
    """The clients of one process; every public coroutine returns plain, picklable data."""

    def __init__(self, sc: Scenario, asg: Assignment, counters: Counters, host: str, port: int, deadline: float):
        self.sc = sc
        self.asg = asg
        self.counters = counters
        self.host = host
        self.port = port
        self.deadline = deadline  # time.monotonic() after which everything stops
        self.slot = 3 * asg.worker
        self.hist = [0] * N_BUCKETS
        self.timeline_in: list[int] = []
        self.timeline_out: list[int] = []
        self.subs: list[MqttClient] = []
        self.pubs: dict[int, MqttClient] = {}
        self.held: list[MqttClient] = []
        self.errors: list[str] = []
        self._pinger: asyncio.Task[None] | None = None
        self._progress: asyncio.Future[None] | None = None
        self._cpu0 = time.process_time()

    # -- connections -----------------------------------------------------------------------------
    async def _open(self, name: str, client_id: str) -> MqttClient:
        loop = asyncio.get_running_loop()
        sc = self.sc
        async with asyncio.timeout(sc.connect_timeout):
            transport, client = await loop.create_connection(lambda: MqttClient(name), self.host, self.port)
        transport.set_write_buffer_limits(high=1 << 20)
        try:
            await client.handshake(client_id, sc.keepalive, sc.connect_timeout)
        except BaseException:
            transport.abort()
            raise
        return client

    def client_id(self, kind: str, index: int) -> str:
        return f"mqb-{self.asg.token}-{kind}{index}"

    async def setup(self) -> dict[str, Any]:
        """Connect and subscribe the subscribers, then connect the publishers."""
        sc = self.sc
        counts = sc.pub_counts()
        known = [c for c in counts if c is not None]
        initial = max(known) + 1 if known else 1 << 16
        for s in self.asg.subs:
            c = await self._open(f"sub{s}", self.client_id("s", s))
            c.index = s
            self.subs.append(c)
            c.as_subscriber(self.hist, self.timeline_out, self.counters, self.asg.worker, initial)
            c.on_receive = self._on_receive
            await c.subscribe(sc.sub_filter(self.asg.token, s), sc.qos, sc.connect_timeout)
        for p in self.asg.pubs:
            self.pubs[p] = await self._open(f"pub{p}", self.client_id("p", p))
        self.start_pinger()
        return {"worker": self.asg.worker, "pubs": len(self.pubs), "subs": len(self.subs)}

    def start_pinger(self) -> None:
        if self.sc.keepalive and self._pinger is None:
            self._pinger = asyncio.create_task(self._ping_loop())

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sc.keepalive / 2)
            for c in (*self.subs, *self.pubs.values(), *self.held):
                c.ping()

    # -- publishing ----------------------------------------------------------------------------
    async def publish(self, t_start: float) -> dict[str, Any]:
        """Run every publisher of this worker from ``t_start`` (monotonic) to its end."""
        self._cpu0 = time.process_time()  # the generator's CPU from here to finish()
        for c in self.subs:
            c.t0 = t_start
        counts = self.sc.pub_counts()
        results = await asyncio.gather(*(self._publisher(p, c, counts[p], t_start) for p, c in self.pubs.items()))
        return {"worker": self.asg.worker, "pubs": results}

    def _outstanding(self) -> float:
        """Messages published and not yet received (deliveries / expected deliveries per message)."""
        c = self.counters
        return c.total(SENT) - c.total(DISTINCT) / self.sc.fan

    def _on_receive(self) -> None:
        """A local subscriber received something: wake the publishers waiting on the window once
        it has drained to its low-water mark (half the window)."""
        fut = self._progress
        if fut is not None and not fut.done() and self._outstanding() <= self.sc.effective_window // 2:
            fut.set_result(None)

    async def _window_ok(self, k: int) -> bool:
        """Wait, if ``k`` more messages do not fit in the window, until it drained to half; False
        when receipts stalled meanwhile.

        With one process every subscriber is local and wakes the waiters; with several, receipts
        are seen in the shared counters, polled every millisecond. The hysteresis (stop when full,
        resume at half) keeps wake-ups rare: publishers then write many chunks in a row.
        """
        sc = self.sc
        window = sc.effective_window
        if not window or not sc.fan or self._outstanding() + k <= window:
            return True
        low = window // 2
        counters = self.counters
        local = sc.procs == 1
        last = counters.total(DISTINCT)
        since = time.monotonic()
        while self._outstanding() > low:
            if local:
                fut = self._progress
                if fut is None or fut.done():
                    fut = self._progress = asyncio.get_running_loop().create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), max(0.001, sc.stall - (time.monotonic() - since)))
            else:
                await asyncio.sleep(0.001)
            now = time.monotonic()
            d = counters.total(DISTINCT)
            if d != last:
                last, since = d, now
            elif now - since > sc.stall or now > self.deadline:
                return False
        return True

    async def _publisher(self, pub: int, c: MqttClient, count: int | None, t_start: float) -> dict[str, Any]:
        sc = self.sc
        qos = sc.qos
        tpl = pk.PublishTemplate(sc.pub_topic(self.asg.token, pub), qos, sc.payload, pub)
        end_t = min(t_start + sc.duration if sc.duration else float("inf"), self.deadline)
        rate = sc.rate / sc.pubs if sc.rate else 0.0
        chunk = max(1, min(sc.chunk, sc.effective_window or sc.chunk, pk.BLOCK))
        inject = pub == 0 and bool(sc.inject_skip or sc.inject_dup)
        skip, dup = set(sc.inject_skip), set(sc.inject_dup)
        mv = self.counters.mv
        slot = self.slot
        seq = packets = 0
        t_first = t_last = 0.0
        stalled = False
        error = None
        delay = t_start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            while True:
                now = time.monotonic()
                if now >= end_t or (count is not None and seq >= count):
                    break
                k = min(chunk, pk.BLOCK - (seq & 0xFF))
                if count is not None:
                    k = min(k, count - seq)
                if rate:
                    due = int((now - t_start) * rate) + 1 - seq
                    if due <= 0:
                        await asyncio.sleep(min(max(seq / rate - (now - t_start), 0.0005), end_t - now, 0.1))
                        continue
                    k = min(k, due)
                if inject:
                    k = 1
                if qos:
                    free = sc.inflight - c.inflight - (1 if inject else 0)
                    if free <= 0:
                        if not await c.wait_ack(sc.stall):
                            stalled = True
                            break
                        continue
                    k = min(k, free)
                if not await self._window_ok(k):
                    stalled = True
                    break
                t_ns = time.time_ns()
                if inject:
                    parts = []
                    if seq not in skip:
                        if qos and not c.take_pids(pk.packet_id(seq), 1):
                            raise ProtocolFailure(f"pub{pub}: packet id {pk.packet_id(seq)} still unacknowledged")
                        parts.append(tpl.one(seq, t_ns, pk.packet_id(seq)))
                    if seq in dup:
                        parts.append(tpl.one(seq, t_ns, c.spare_pid() if qos else 0))
                    data = b"".join(parts)
                    n_packets = len(parts)
                else:
                    if qos and not c.take_pids(pk.packet_id(seq), k):
                        # an id of 65280 messages ago is still unacknowledged: wait for acks
                        if not await c.wait_ack(sc.stall):
                            stalled = True
                            break
                        continue
                    data = tpl.chunk(seq, k, t_ns)
                    n_packets = k
                if data:
                    c.write(data)
                now = time.monotonic()
                if not seq:
                    t_first = now
                t_last = now
                seq += k
                packets += n_packets
                mv[slot] += k
                timeline_add(self.timeline_in, int(now - t_start), k)
                if c.paused:
                    if not await c.drain(sc.stall):
                        stalled = True
                        break
                elif rate:
                    # at most one write per millisecond per publisher: what falls due meanwhile
                    # goes out together (timestamps are per write, so this costs no accuracy)
                    await asyncio.sleep(max(0.001, seq / rate - (time.monotonic() - t_start)))
                else:
                    await asyncio.sleep(0)  # let the subscribers of this loop read
            while qos and c.inflight > 0 and not stalled and time.monotonic() < self.deadline:
                if not await c.wait_ack(sc.stall):
                    stalled = True
        except ProtocolFailure as exc:
            error = str(exc)
        return {
            "pub": pub,
            "sent": seq,
            "packets": packets,
            "acked": c.acked,
            "unacked": c.inflight if qos else 0,
            "unexpected_acks": c.unexpected_acks,
            "t_first": t_first,
            "t_last": t_last,
            "t_last_ack": c.t_last_ack,
            "stalled": stalled,
            "error": error,
        }

    # -- connection storm and idle connections -------------------------------------------------
    async def storm(self, t_start: float) -> dict[str, Any]:
        """Open this worker's range of connections (CONNECT -> CONNACK), closing each at once
        unless ``hold``; see ``connections.connect_many``."""
        self._cpu0 = time.process_time()
        return await connect_many(self, t_start, subscribe=False, keep=self.sc.hold)

    async def idle(self, t_start: float) -> dict[str, Any]:
        """Open this worker's connections, each with one subscription, and keep them."""
        self._cpu0 = time.process_time()
        return await connect_many(self, t_start, subscribe=True, keep=True)

    # -- the end -------------------------------------------------------------------------------
    async def finish(self) -> dict[str, Any]:
        """Disconnect everything; return the subscribers' bitmaps and counters."""
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
            self._pinger = None
        subs = [c.subscriber_result() for c in self.subs]
        clients = (*self.subs, *self.pubs.values(), *self.held)
        for c in clients:
            c.disconnect()
        held = len(self.held)
        self.subs, self.pubs, self.held = [], {}, []
        # Let the closes go out. A publisher's transport may still hold PUBLISHes the broker has
        # not read (it may pause reading, e.g. webhook backpressure): wait until every buffer has
        # been written, or the stall bound passes, so a run without subscribers loses no tail.
        deadline = time.monotonic() + self.sc.stall
        while time.monotonic() < deadline and any(_unsent(c) for c in clients):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        return {
            "worker": self.asg.worker,
            "subs": subs,
            "hist": self.hist,
            "timeline_in": self.timeline_in,
            "timeline_out": self.timeline_out,
            "cpu_s": time.process_time() - self._cpu0,
            "held": held,
            "errors": self.errors,
        }

    def abort(self) -> None:
        """Drop every connection at once (errors, Ctrl-C)."""
        if self._pinger is not None:
            self._pinger.cancel()
        for c in (*self.subs, *self.pubs.values(), *self.held):
            if c.transport is not None:
                c.closing = True
                c.transport.abort()


def _unsent(client: Any) -> int:
    """Bytes still in a closing client's transport buffer (0 once it is gone)."""
    transport = client.transport
    if transport is None or client.lost_reason:
        return 0
    try:
        return int(transport.get_write_buffer_size())
    except (AttributeError, RuntimeError):
        return 0


class WorkerHost:
    """The root object of a worker child process (see ``rpc``)."""

    def __init__(self) -> None:
        self.worker: Worker | None = None
        self._mm: mmap.mmap | None = None
        self._counters: Counters | None = None

    async def init(
        self, sc: Scenario, asg: Assignment, counters_path: str, host: str, port: int, deadline: float
    ) -> int:
        fd = os.open(counters_path, os.O_RDWR)
        try:
            self._mm = mmap.mmap(fd, Counters.size(sc.procs))
        finally:
            os.close(fd)
        self._counters = Counters(self._mm, sc.procs)
        self.worker = Worker(sc, asg, self._counters, host, port, deadline)
        return os.getpid()

    def _w(self) -> Worker:
        if self.worker is None:
            raise RuntimeError("init first")
        return self.worker

    async def setup(self) -> dict[str, Any]:
        return await self._w().setup()

    async def publish(self, t_start: float) -> dict[str, Any]:
        return await self._w().publish(t_start)

    async def storm(self, t_start: float) -> dict[str, Any]:
        return await self._w().storm(t_start)

    async def idle(self, t_start: float) -> dict[str, Any]:
        return await self._w().idle(t_start)

    async def finish(self) -> dict[str, Any]:
        return await self._w().finish()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.abort()
        if self._counters is not None:
            self._counters.release()
        if self._mm is not None:
            self._mm.close()


if __name__ == "__main__":  # pragma: no cover - runs as a child process
    sys.exit(rpc.child_main(WorkerHost()))
