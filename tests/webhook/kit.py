"""Test kit for webhook delivery: a real aiohttp receiver, event Structs, bounded waits.

Nothing here imports the code under test except ``Webhook`` construction helpers; signatures
and JSON shapes are checked with code written independently of ``mqhook.webhook``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from mqhook.webhook import Webhook, WebhookConfig, parse_webhook

T = TypeVar("T")
Handler = Callable[["Received", web.Request], Awaitable[web.StreamResponse | None]]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one async test body (pytest-asyncio is not installed)."""
    return asyncio.run(coro)


class Publish(msgspec.Struct, tag_field="event", tag="message.publish", kw_only=True):
    """A message.publish-shaped event, like the events layer's (clientid + timestamp ms)."""

    clientid: str
    topic: str = "t/1"
    payload: str | bytes = "hello"
    seq: int = 0
    username: str = "undefined"
    timestamp: int = msgspec.field(default_factory=lambda: int(time.time() * 1000))
    node: str = "mqhook@test"


def put(wh: Webhook, event: msgspec.Struct) -> bool:
    """Hand ``wh`` one event the way the events layer does: its JSON and its client id."""
    return wh.put(msgspec.json.encode(event), event.clientid)  # type: ignore[attr-defined]


class Connected(msgspec.Struct, tag_field="event", tag="client.connected", kw_only=True):
    clientid: str
    timestamp: int = 0
    node: str = "mqhook@test"


class Received:
    """One request the receiver saw."""

    def __init__(
        self, method: str, path: str, headers: dict[str, str], body: bytes, at: float, raw_path: str = ""
    ) -> None:
        self.method = method
        self.path = path
        self.raw_path = raw_path  # the request target exactly as sent
        self.headers = headers
        self.body = body
        self.at = at

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[dict[str, Any]]:
        """The events of this request: one object, or the elements of a batch array."""
        data = self.json()
        return data if isinstance(data, list) else [data]

    def __repr__(self) -> str:
        return f"<Received {self.method} {self.path} {self.body[:80]!r}>"


class Receiver:
    """A real HTTP server on 127.0.0.1. ``handler`` may answer; default is 200 like EMQX's sample."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.requests: list[Received] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.release = asyncio.Event()  # handlers that block wait on this; set at stop()

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec = Received(request.method, request.path_qs, dict(request.headers), body, time.monotonic(), request.raw_path)
        self.requests.append(rec)
        self._changed.set()
        if self.handler is not None:
            answer = await self.handler(rec, request)
            if answer is not None:
                return answer
        return web.json_response({"result": "ok", "message": "success"})

    def events(self) -> list[dict[str, Any]]:
        return [ev for rec in self.requests for ev in rec.events()]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> None:
        """Wait, bounded, until ``predicate()`` holds; re-checked on every request received."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


async def until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> None:
    """Bounded poll for state with no event to await (e.g. a counter bumped after a reply)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(interval)


def free_port() -> int:
    """A port nothing listens on right now (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(url: str, **settings: Any) -> WebhookConfig:
    return parse_webhook({"name": settings.pop("name", "wh"), "url": url, **settings}, "$.webhooks[0]")


def webhook(url: str, **settings: Any) -> Webhook:
    return Webhook(config(url, **settings))


def balanced(wh: Webhook) -> bool:
    """EMQX's invariant: matched = success + failed + dropped + queuing + in flight."""
    return wh.matched == wh.success + wh.failed + sum(wh.dropped.values()) + wh.queuing + wh.inflight_events
