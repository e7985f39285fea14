"""Test kit for the metrics tests: a real webhook receiver, raw MQTT packets, exposition parsing.

Written independently of the code under test: MQTT packets are hex-level byte strings built
here, and metrics are read with prometheus_client's own text parser.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

# status policy: request number (1-based) -> (HTTP status, seconds to wait before answering)
Policy = Callable[[int], tuple[int, float]]


def always_ok(n: int) -> tuple[int, float]:
    return 200, 0.0


def flaky(n: int) -> tuple[int, float]:
    """Fails part of the time: every 3rd request 503 (retried), every 7th 400 (not retried)."""
    if n % 3 == 0:
        return 503, 0.0
    if n % 7 == 0:
        return 400, 0.0
    return 200, 0.0


def put(wh: Any, event: msgspec.Struct) -> bool:
    """Hand ``wh`` one event the way the events layer does: its JSON and its client id."""
    ok: bool = wh.put(msgspec.json.encode(event), event.clientid)  # type: ignore[attr-defined]
    return ok


class Event(msgspec.Struct, tag_field="event", tag="message.publish", kw_only=True):
    """A message.publish-shaped event, as the events layer builds them (clientid, timestamp ms)."""

    clientid: str
    topic: str = "t/1"
    payload: str = "hello"
    timestamp: int = msgspec.field(default_factory=lambda: time.time_ns() // 1_000_000)
    node: str = "mqhook@test"


class Receiver:
    """An aiohttp server on 127.0.0.1 answering per ``policy``; counts requests and statuses."""

    def __init__(self, policy: Policy = always_ok) -> None:
        self.policy = policy
        self.requests = 0
        self.statuses: dict[int, int] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _answer(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        status, delay = self.policy(self.requests)
        if delay:
            await asyncio.sleep(delay)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return web.Response(status=status, text="ok" if status < 300 else "no")


class ThreadedReceiver:
    """A ``Receiver`` on an event loop of its own thread, for synchronous (subprocess) tests."""

    def __init__(self, policy: Policy = always_ok) -> None:
        self.receiver = Receiver(policy)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self._loop).result(10)

    def url(self, path: str = "/hook") -> str:
        return self.receiver.url(path)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.receiver.stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


# -- raw MQTT 3.1.1 (hand-built, as a client would send) -------------------------------------------


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect(client_id: str) -> bytes:
    body = _str("MQTT") + b"\x04\x02\x00\x3c" + _str(client_id)
    return b"\x10" + _remaining(len(body)) + body


def subscribe(topic_filter: str, qos: int = 0, packet_id: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + _str(topic_filter) + bytes([qos])
    return b"\x82" + _remaining(len(body)) + body


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 1) -> bytes:
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([0x30 | qos << 1]) + _remaining(len(body)) + body


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One packet: (type, body)."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first >> 4, await reader.readexactly(length)


# -- exposition ------------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition: (sample name, labels) -> value."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; KeyError if the series does not exist."""
    return samples[(name, frozenset(labels.items()))]


def free_port() -> int:
    """A loopback port free right now (a server started just after will most likely get it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the Grafana dashboard ---------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "mqhook-dashboard.json"
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that queries (rows, and panels folded inside collapsed rows, flattened)."""
    out: list[dict[str, Any]] = []
    for p in dash["panels"]:
        if p.get("type") == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def targets(dash: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) of every query of every panel."""
    return [(p["title"], t["refId"], t["expr"]) for p in panels(dash) for t in p.get("targets", [])]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's variable interpolation for ``$name`` and ``${name}``; KeyError for an unknown one."""
    return _VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)
