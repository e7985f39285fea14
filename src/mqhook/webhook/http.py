"""A lean HTTP/1.1 client for webhook delivery: one origin, a keep-alive pool, asyncio.Protocol.

Why not aiohttp's ``ClientSession``: measured on a 2-core machine (``bench/test_bench_http.py``)
one request through it costs 230-450 us of broker CPU, a bare keep-alive ``asyncio.Protocol``
exchange 55-87 us. A webhook needs little of what a general client offers (one origin, no
redirects, no cookies, no decompression, no streaming), so this client does only this:

- ``HttpClient``: at most ``pool_size`` connections to the origin of one URL, one request at a
  time on each (no pipelining); idle ones are reused last-in first-out. A connection is reused
  only if its reply was read whole and neither side said ``Connection: close`` (an HTTP/1.0 reply
  without ``keep-alive`` closes too); one the server closed or wrote to while idle, or idle for
  more than ``KEEPALIVE_S``, is never reused. A request that fails on a reused connection before
  any reply byte arrived is sent once more on a fresh one (servers close idle connections; the
  request may cross their FIN).
- Timeouts as aiohttp's ``ClientTimeout(total=request_timeout, connect=connect_timeout)``: the
  whole call (pool wait, connect, exchange) ends by ``request_timeout``, a connect by
  ``connect_timeout``. Expiry raises ``RequestTimeout`` (a ``TimeoutError``).
- A request is ONE transport write: request line, ``Host``, the caller's headers as given,
  ``Content-Length``, the body. ``Content-Type: application/octet-stream`` is added when a body
  is sent without a content-type (aiohttp did; RFC 9110 §8.3). Credentials in the URL become
  ``Authorization: Basic`` (aiohttp did). No ``Accept``/``Accept-Encoding``: replies arrive as sent.
- A reply: status line, headers (at most ``HEAD_LIMIT`` bytes), body by ``Content-Length``,
  chunked, or until close; 1xx interim replies are skipped. At most ``reply_limit`` body bytes
  are kept; a reply with more is cut there and its connection closed, unread.
- Errors are exceptions of this module (``ConnectError``, ``ServerDisconnectedError``,
  ``ResponseError``), ``RequestTimeout``, or ``ValueError`` for a request that cannot be written;
  one raised after the status line carries it in ``.response``. ``request.send_once`` turns them
  into ``Outcome``s.

Runs on the loop thread only; no locks. ``tls_context`` is the one place TLS settings go.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from collections import deque
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit

from mqhook.webhook.http_conn import (
    ClientClosedError,
    ConnectError,
    HttpConnection,
    HttpError,
    RequestTimeout,
    Response,
    ResponseError,
    ServerDisconnectedError,
    tls_context,
)

__all__ = [
    "ClientClosedError",
    "ConnectError",
    "HttpClient",
    "HttpError",
    "RequestTimeout",
    "Response",
    "ResponseError",
    "ServerDisconnectedError",
    "tls_context",
]

KEEPALIVE_S = 15.0  # an idle connection older than this is closed, not reused (aiohttp: 15 s)
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})  # no Content-Length: 0
_FRAMING = frozenset({"host", "content-type", "authorization", "connection", "content-length", "transfer-encoding"})
_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]")  # what a request target may hold as is
_TARGET_SAFE = "/?:@!$&'()*+,;=%~"


class HttpClient:
    """Requests to the origin (scheme, host, port) of ``url``; see the module docstring."""

    def __init__(
        self,
        url: str,
        pool_size: int = 8,
        connect_timeout: float = 15.0,
        request_timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        reply_limit: int = 65536,
    ) -> None:
        parts = urlsplit(url)
        start = url.index("//") + 2
        cut = [i for i in (url.find("/", start), url.find("?", start)) if i >= 0]
        self.prefix = url[: min(cut)] if cut else url  # scheme://netloc exactly as written
        self.https = parts.scheme.lower() == "https"
        host = parts.hostname or ""
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        self.host = host
        self.port = parts.port or (443 if self.https else 80)
        host_value = f"[{host}]" if ":" in host else host
        if parts.port is not None and parts.port != (443 if self.https else 80):
            host_value = f"{host_value}:{parts.port}"
        self.host_line = f"Host: {host_value}\r\n"
        self.auth_line = ""
        if parts.username is not None:
            creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.auth_line = f"Authorization: Basic {base64.b64encode(creds).decode()}\r\n"
        self.ssl = (ssl_context or tls_context()) if self.https else None
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.reply_limit = reply_limit
        self.open = 0  # connections opening, busy or idle (at most pool_size)
        self._idle: list[HttpConnection] = []
        self._conns: set[HttpConnection] = set()
        self._waiters: deque[asyncio.Future[HttpConnection | None]] = deque()
        self._closed = False
        self._names: dict[str, str] = {}  # header name -> its lower case if it is in _FRAMING, else ""
        self._last = ("", "")  # the last URL and its request target (a webhook's URL rarely varies)

    # -- the request ---------------------------------------------------------------------------
    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        """Send one request and read its reply (up to ``reply_limit`` body bytes); see the module doc."""
        if self._closed:
            raise ClientClosedError("the HTTP client is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        data, keep = self.encode(method, url, headers, body)
        retry = True
        while True:
            conn = self._take_idle(loop.time()) if retry else None
            reused = conn is not None
            if conn is None:
                conn, reused = await self._acquire(deadline, fresh=not retry)
            try:
                return await conn.send(data, deadline, keep)
            except ServerDisconnectedError:
                if not (reused and retry and not conn.got):
                    raise
                retry = False  # the server closed an idle connection as we wrote: once more, fresh
            finally:
                self._release(conn)

    def encode(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> tuple[bytes, bool]:
        """The bytes of the request (head + body) and whether the connection may be kept."""
        parts = [f"{method} {self.target(url)} HTTP/1.1\r\n", self.host_line]
        keep = True
        typed = False
        names = self._names
        for name, value in headers.items():
            low = names.get(name)
            if low is None:
                low = name.lower()
                low = low if low in _FRAMING else ""
                if len(names) < 256:  # header names come from the config: a handful
                    names[name] = low
            if low:
                if low == "host":
                    parts[1] = ""
                elif low == "content-type":
                    typed = True
                elif low == "authorization":
                    if self.auth_line:
                        raise ValueError("an Authorization header and credentials in the URL cannot be combined")
                elif low == "connection":
                    keep = "close" not in value.lower()
                else:
                    continue  # Content-Length / Transfer-Encoding: the client frames the body itself
            parts.append(f"{name}: {value}\r\n")
        if self.auth_line:
            parts.append(self.auth_line)
        text = "".join(parts)
        lines = len(parts) - (not parts[1])
        if text.count("\n") != lines or text.count("\r") != lines or "\0" in text:
            raise ValueError("a request header contains CR, LF or NUL")
        if body is None:
            tail = "\r\n" if method in _NO_BODY_METHODS else "Content-Length: 0\r\n\r\n"
            return (text + tail).encode(), keep
        tail = f"Content-Length: {len(body)}\r\n\r\n"
        if not typed:
            tail = f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n\r\n"
        return (text + tail).encode() + body, keep

    def target(self, url: str) -> str:
        """The request target (path + query) of ``url``, which must be on this client's origin."""
        if url == self._last[0]:
            return self._last[1]
        prefix = self.prefix
        if not url.startswith(prefix) or url[len(prefix) : len(prefix) + 1] not in ("", "/", "?"):
            raise ValueError(f"URL {url[:200]!r} is not on this client's origin {prefix!r}")
        rest = url[len(prefix) :]
        if not rest or rest[0] == "?":
            rest = "/" + rest
        if _UNSAFE.search(rest):
            rest = quote(rest.split("#", 1)[0], safe=_TARGET_SAFE)
        self._last = (url, rest)
        return rest

    # -- the pool --------------------------------------------------------------------------------
    def _take_idle(self, now: float) -> HttpConnection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.dead and now - conn.idle_since <= KEEPALIVE_S:
                return conn
            self._drop(conn)
        return None

    async def _acquire(self, deadline: float, fresh: bool = False) -> tuple[HttpConnection, bool]:
        """A connection: an idle one, a new one, or one handed over on release. ``fresh`` (the
        re-send) opens a new one, closing the oldest idle one if the pool is full."""
        loop = asyncio.get_running_loop()
        while True:
            conn = None if fresh else self._take_idle(loop.time())
            if conn is not None:
                return conn, True
            if self.open < self.pool_size:
                return await self._connect(deadline), False
            if fresh and self._idle:
                self._drop(self._idle.pop(0))
                continue
            fut: asyncio.Future[HttpConnection | None] = loop.create_future()
            self._waiters.append(fut)
            try:
                async with asyncio.timeout_at(deadline):
                    handed = await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:  # woken, then cancelled
                    given = fut.result()
                    if given is not None:
                        self._release(given)
                    else:
                        self._wake()
                else:
                    fut.cancel()
                raise
            if handed is not None:
                return handed, True

    async def _connect(self, deadline: float) -> HttpConnection:
        loop = asyncio.get_running_loop()
        self.open += 1
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self.connect_timeout)):
                conn = await self._open(loop)
        except BaseException:
            self.open -= 1
            self._wake()
            raise
        if self._closed:
            conn.counted = False
            self.open -= 1
            conn.close()
            raise ClientClosedError("the HTTP client is closed")
        self._conns.add(conn)
        return conn

    async def _open(self, loop: asyncio.AbstractEventLoop) -> HttpConnection:
        """Resolve, then try each address in turn (as aiohttp); errors name the last address's failure."""
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectError(self.host, self.port, exc) from None
        error: OSError = OSError(f"no address for {self.host}")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
                server_hostname = self.host if self.ssl is not None else None
                _, conn = await loop.create_connection(
                    lambda: HttpConnection(self), sock=sock, ssl=self.ssl, server_hostname=server_hostname
                )
                return conn
            except OSError as exc:  # ssl.SSLError (e.g. certificate verify failed) is an OSError
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        raise ConnectError(self.host, self.port, error)

    def _release(self, conn: HttpConnection) -> None:
        if conn.reusable and not conn.dead and not self._closed:
            conn.reusable = False
            conn.fut = None
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            conn.idle_since = conn.loop.time()
            self._idle.append(conn)
        else:
            if conn.fut is not None and not conn.fut.done():  # cancelled mid-exchange
                conn.kill()
            conn.fut = None
            self._drop(conn)

    def _drop(self, conn: HttpConnection) -> None:
        conn.dead = True
        conn.close()
        self._conns.discard(conn)
        if conn.counted:
            conn.counted = False
            self.open -= 1
            self._wake()

    def _wake(self) -> None:
        """A slot is free: the first live waiter may open a connection."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _lost(self, conn: HttpConnection) -> None:
        """The transport closed; an idle connection leaves the pool now (a busy one on release)."""
        if conn in self._idle:
            self._idle.remove(conn)
            self._drop(conn)

    async def close(self) -> None:
        """Close every connection; later requests raise ``ClientClosedError``."""
        self._closed = True
        for conn in list(self._conns):
            if conn.fut is not None and not conn.fut.done():
                conn.kill()
            else:
                conn.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ClientClosedError("the HTTP client is closed"))
        await asyncio.sleep(0)  # let the transports run connection_lost
