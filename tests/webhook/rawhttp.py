"""Raw HTTP peers and client-side probes for the tests of ``mqhook.webhook.http``.

- ``RawServer``: a bare asyncio server on 127.0.0.1 whose replies are written byte for byte
  (misbehaving receivers: odd framing, huge headers, closing idle connections, never answering).
  ``until(predicate)`` waits for its counters (accepted, active, eofs) to get somewhere.
- ``Wire``: what the client's connections read, for waits instead of sleeps: every
  ``data_received`` (its size) and every ``connection_lost`` of ``HttpConnection`` are recorded
  (the methods are wrapped with ``monkeypatch``; the originals still run first). A server that
  must deliver a reply in several reads writes a piece, then waits until the client has read it.

Nothing here sleeps; every test body runs under ``bounded`` (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from mqhook.webhook.http import HttpClient, HttpConnection
from mqhook.webhook.request import REPLY_LIMIT, Outcome, Request, send_once

from .kit import run

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"result": "ok"}'
Serve = Callable[["RawConn"], Awaitable[None]]


def bounded(coro: Coroutine[Any, Any, None], seconds: float = 10.0) -> None:
    async def body() -> None:
        async with asyncio.timeout(seconds):
            await coro

    run(body())


async def forever() -> None:
    """What a server that never answers awaits: an event nobody sets."""
    await asyncio.Event().wait()


class Changes:
    """Counters that tests wait on: ``until(predicate)`` returns once it holds (checked on each ``notify``)."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self._changed.clear()
            await self._changed.wait()


class RawConn:
    """One accepted connection of a ``RawServer``: read requests, write raw bytes."""

    def __init__(self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server, self.reader, self.writer = server, reader, writer

    async def request(self) -> bytes | None:
        """One request's head + body (by Content-Length), or None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        request = head + await self.reader.readexactly(length)
        self.server.requests.append(request)
        return request

    async def reply(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class RawServer(Changes):
    """A TCP server on 127.0.0.1: ``serve(conn)`` runs per accepted connection, which closes after it."""

    def __init__(self, serve: Serve, tls: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.serve = serve
        self.tls = tls
        self.accepted = 0
        self.active = 0
        self.max_active = 0
        self.requests: list[bytes] = []  # every request read, in order
        self.eofs = 0  # connections whose peer (the client) closed them; counted by ``serve``
        self._server: asyncio.Server | None = None

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, path: str = "/hook") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.notify()
        try:
            await self.serve(RawConn(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.active -= 1
            writer.close()
            self.notify()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def keep_alive(reply: bytes = OK, before: Callable[[], Awaitable[None]] | None = None) -> Serve:
    """Answer every request on the connection with ``reply`` (after awaiting ``before()``) until EOF."""

    async def serve(conn: RawConn) -> None:
        while await conn.request() is not None:
            if before is not None:
                await before()
            await conn.reply(reply)

    return serve


class Wire(Changes):
    """What the client's connections read and when they closed (see the module docstring)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__()
        self.reads: list[int] = []  # the size of every data_received, all connections, in order
        self.received = 0  # their sum
        self.lost = 0  # connection_lost calls
        data_received = HttpConnection.data_received
        connection_lost = HttpConnection.connection_lost

        def on_data(conn: HttpConnection, data: bytes) -> None:
            data_received(conn, data)
            self.reads.append(len(data))
            self.received += len(data)
            self.notify()

        def on_lost(conn: HttpConnection, exc: Exception | None) -> None:
            connection_lost(conn, exc)
            self.lost += 1
            self.notify()

        monkeypatch.setattr(HttpConnection, "data_received", on_data)
        monkeypatch.setattr(HttpConnection, "connection_lost", on_lost)

    async def write_read(self, conn: RawConn, data: bytes) -> None:
        """Write ``data`` and wait until the client has read all of it (or a connection of it closed)."""
        target, lost = self.received + len(data), self.lost
        await conn.reply(data)
        await self.until(lambda: self.received >= target or self.lost > lost)


def req(url: str, method: str = "POST", body: bytes | None = b'{"a":1}') -> Request:
    return Request(method, url, {}, body, 1)


async def send(client: HttpClient, url: str, headers: dict[str, str] | None = None, **kw: Any) -> Outcome:
    return await send_once(client, req(url, **kw), headers if headers is not None else {"content-type": "x/y"})


def client_for(url: str, **kw: Any) -> HttpClient:
    kw.setdefault("reply_limit", REPLY_LIMIT)
    return HttpClient(url, **kw)
