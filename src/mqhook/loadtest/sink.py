"""The webhook receiver of ``mqhook bench``: counts events, finds loss and duplicates, times them.

``mqhook bench --sink --port 5000`` runs it alone (a line of counts twice a second, a summary
at the end, ``--json``); ``mqhook bench --sink-port P`` runs it in a child process during a
pub/sub run and adds its figures to the run's.

A body is one JSON event or an array of them (batches). Per event:

- by type (``event`` field); duplicates by message id: the EMQX ``id`` field, keyed with the
  event type (and, for per-subscriber events such as ``message.delivered``, the ``clientid``),
  kept as a 64-bit hash per key;
- for the tracked event type (``message.publish`` by default): the payload is decoded
  (``plain`` text or ``base64``, detected per event unless told), its publisher and sequence
  number are marked in a bitmap (distinct, duplicates, reordering, and loss against the counts
  the run published), and publish -> receiver latency is the receipt time minus the send time in
  the payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from typing import Any

import msgspec

from mqhook.loadtest import rpc
from mqhook.loadtest.packets import decode_event_payload
from mqhook.loadtest.stats import Histogram, SeqTracker, timeline_add

PER_SUBSCRIBER = frozenset({"message.delivered", "message.acked", "delivery.dropped"})
REPLY = b'{"result": "ok", "message": "success"}'


class Event(msgspec.Struct):
    """The fields the sink reads; every other field is skipped by the decoder."""

    event: str = ""
    id: str = ""
    clientid: str = ""
    payload: str | None = None


_decoder = msgspec.json.Decoder(Event | list[Event])


class SinkCounter:
    """Sans-I/O counting: ``feed(body, now_ns)`` per request, ``snapshot()`` any time."""

    def __init__(self, track_event: str = "message.publish", encoding: str = "auto") -> None:
        self.track_event = track_event
        self.encoding = encoding
        self.requests = 0
        self.bad = 0
        self.events = 0
        self.by_type: dict[str, int] = {}
        self.max_batch = 0
        self._ids: set[int] = set()
        self.dup_ids = 0
        self.no_id = 0
        self.tracked = 0
        self.undecodable = 0
        self.seqs = SeqTracker()
        self.hist = Histogram()
        self.timeline: list[int] = []
        self.t0 = time.monotonic()
        self.t_first = 0.0
        self.t_last = 0.0

    def feed(self, body: bytes, now_ns: int | None = None) -> bool:
        """Count one request body; False if it is not JSON events."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        self.requests += 1
        try:
            obj = _decoder.decode(body)
        except msgspec.DecodeError:
            self.bad += 1
            return False
        events = obj if isinstance(obj, list) else [obj]
        if not events:
            return True
        now = time.monotonic()
        if not self.events:
            self.t_first = now
        self.t_last = now
        self.events += len(events)
        self.max_batch = max(self.max_batch, len(events))
        timeline_add(self.timeline, int(now - self.t0), len(events))
        by_type = self.by_type
        for ev in events:
            by_type[ev.event] = by_type.get(ev.event, 0) + 1
            if ev.id:
                key = hash((ev.event, ev.id, ev.clientid if ev.event in PER_SUBSCRIBER else ""))
                if key in self._ids:
                    self.dup_ids += 1
                else:
                    self._ids.add(key)
            else:
                self.no_id += 1
            if ev.event == self.track_event and ev.payload is not None:
                self.tracked += 1
                decoded = decode_event_payload(ev.payload, self.encoding)
                if decoded is None:
                    self.undecodable += 1
                    continue
                pub, seq, sent_ns = decoded
                self.seqs.add(pub, seq)
                self.hist.record((now_ns - sent_ns) // 1000)
        return True

    def per_publisher(self) -> dict[int, int]:
        """{publisher: distinct sequence numbers received}."""
        return {pub: bm.count(1) for pub, bm in self.seqs.seen.items()}

    def missing_below_max(self) -> int:
        """Sequence numbers never received below the highest received, over all publishers."""
        return sum(self.seqs.last[pub] - n for pub, n in self.per_publisher().items())

    def snapshot(self, with_hist: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "bad_bodies": self.bad,
            "events": self.events,
            "by_type": dict(self.by_type),
            "max_batch": self.max_batch,
            "distinct_ids": len(self._ids),
            "dup_ids": self.dup_ids,
            "no_id": self.no_id,
            "track_event": self.track_event,
            "tracked": self.tracked,
            "undecodable": self.undecodable + self.seqs.foreign,
            "distinct_seq": self.seqs.distinct,
            "dup_seq": self.seqs.dups,
            "reordered": self.seqs.reordered,
            "missing_below_max": self.missing_below_max(),
            "per_publisher": self.per_publisher(),
            "latency_ms": self.hist.summary_ms(),
            "t_first": self.t_first,
            "t_last": self.t_last,
        }
        if with_hist:
            out["hist"] = self.hist.counts
            out["timeline"] = self.timeline
        return out


def make_app(holder: list[SinkCounter]) -> Any:
    """An aiohttp app: any method, any path, counts into ``holder[0]``, answers 200 (400 to
    a body that is not JSON events). ``GET /count`` returns the snapshot as JSON."""
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if request.method == "GET" and request.path == "/count":
            return web.json_response(holder[0].snapshot())
        ok = holder[0].feed(body)
        return web.Response(
            body=REPLY if ok else b"not JSON events", status=200 if ok else 400, content_type="application/json"
        )

    app = web.Application(client_max_size=256 << 20)
    app.router.add_route("*", "/{tail:.*}", receive)
    return app


class Sink:
    """A running receiver (aiohttp on the current loop)."""

    def __init__(self, track_event: str = "message.publish", encoding: str = "auto") -> None:
        self.holder = [SinkCounter(track_event, encoding)]
        self._runner: Any = None
        self.port = 0

    @property
    def counter(self) -> SinkCounter:
        return self.holder[0]

    async def start(self, host: str, port: int) -> int:
        from aiohttp import web

        self._runner = web.AppRunner(make_app(self.holder), access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            await self.stop()
            raise
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self.port

    def reset(self) -> None:
        old = self.counter
        self.holder[0] = SinkCounter(old.track_event, old.encoding)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class SinkHost:
    """Root object of a sink child process (``python -m mqhook.loadtest.sink``, see ``rpc``)."""

    def __init__(self) -> None:
        self.sink: Sink | None = None

    async def start(self, host: str, port: int, track_event: str, encoding: str) -> int:
        self.sink = Sink(track_event, encoding)
        return await self.sink.start(host, port)

    def reset(self) -> None:
        if self.sink is not None:
            self.sink.reset()

    def snapshot(self, with_hist: bool = False) -> dict[str, Any]:
        """The counts, and ``process_cpu_s``: this child process's CPU seconds so far."""
        if self.sink is None:
            return {}
        return {**self.sink.counter.snapshot(with_hist), "process_cpu_s": round(time.process_time(), 3)}

    async def stop(self) -> None:
        if self.sink is not None:
            await self.sink.stop()


def format_line(snap: dict[str, Any], elapsed: float, rate: float) -> str:
    return (
        f"{elapsed:6.1f}s events {snap['events']:,} ({rate:,.0f}/s) {snap['track_event']} {snap['tracked']:,} "
        f"dup ids {snap['dup_ids']:,} dup seq {snap['dup_seq']:,} missing {snap['missing_below_max']:,}"
    )


async def serve_standalone(
    host: str, port: int, track_event: str, encoding: str, max_seconds: float, progress: bool
) -> dict[str, Any]:
    """``mqhook bench --sink``: run until Ctrl-C / SIGTERM or ``max_seconds``; return the snapshot."""
    import signal

    sink = Sink(track_event, encoding)
    bound = await sink.start(host, port)
    print(f"mqhook bench sink listening on http://{host}:{bound}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    t0 = time.monotonic()
    last_events, last_t = 0, t0
    try:
        while not stop.is_set() and time.monotonic() - t0 < max_seconds:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            if progress:
                now = time.monotonic()
                snap = sink.counter.snapshot()
                rate = (snap["events"] - last_events) / max(now - last_t, 1e-6)
                last_events, last_t = snap["events"], now
                sys.stderr.write("\r" + format_line(snap, now - t0, rate) + "   ")
                sys.stderr.flush()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await sink.stop()
    if progress:
        sys.stderr.write("\n")
    return sink.counter.snapshot(with_hist=True)


def sink_summary(snap: dict[str, Any]) -> str:
    """The end-of-run text of the standalone sink."""
    lat = snap["latency_ms"]
    lines = [
        f"requests {snap['requests']:,}  events {snap['events']:,}  bad bodies {snap['bad_bodies']:,}  "
        f"largest batch {snap['max_batch']:,}",
        "by type: " + (", ".join(f"{k} {v:,}" for k, v in sorted(snap["by_type"].items())) or "-"),
        f"duplicates by id: {snap['dup_ids']:,} (of {snap['distinct_ids']:,} distinct ids)",
        f"{snap['track_event']}: {snap['tracked']:,} tracked, {snap['distinct_seq']:,} distinct, "
        f"{snap['dup_seq']:,} duplicate sequence numbers, {snap['missing_below_max']:,} missing below the highest, "
        f"{snap['reordered']:,} reordered, {snap['undecodable']:,} not ours",
        "publish -> receiver latency ms: "
        + "  ".join(f"{k} {v}" for k, v in lat.items() if k != "count" and v is not None),
    ]
    return "\n".join(lines)


def dumps(snap: dict[str, Any]) -> str:
    return json.dumps(snap, indent=2, sort_keys=True)


if __name__ == "__main__":  # pragma: no cover - runs as a child process
    sys.exit(rpc.child_main(SinkHost()))
