"""A lean HTTP/1.1 client for webhook delivery: one origin, a keep-alive pool, replies parsed by llhttp.

Why not aiohttp's ``ClientSession``: measured on a 2-core machine (``bench/test_bench_http.py``)
one request through it costs 230-450 us of broker CPU, a bare keep-alive ``asyncio.Protocol``
exchange 55-87 us. A webhook needs little of what a general client offers (one origin, no
redirects, no cookies, no decompression, no streaming), so this client does only this:

- ``HttpClient``: at most ``pool_size`` connections to the origin of one URL, one request at a
  time on each (no pipelining); idle ones are reused last-in first-out. A connection is reused
  only if its reply was read whole and both sides keep it: the caller sent no ``Connection:
  close`` and the parser's ``should_keep_alive()`` holds (no ``close`` token; an HTTP/1.0 reply
  only with ``keep-alive``; not a close-delimited body). One the server closed or wrote to while
  idle, or idle for more than ``KEEPALIVE_S``, is never reused. A request that fails on a reused
  connection before any reply byte arrived is sent once more on a fresh one (servers close idle
  connections; the request may cross their FIN).
- Timeouts as aiohttp's ``ClientTimeout(total=request_timeout, connect=connect_timeout)``: the
  whole call (pool wait, connect, exchange) ends by ``request_timeout``, a connect by
  ``connect_timeout``. Expiry raises ``RequestTimeout`` (an ``HttpError`` and a ``TimeoutError``).
- A request is ONE transport write: request line, ``Host``, the caller's headers as given,
  ``Content-Length``, the body. ``Content-Type: application/octet-stream`` is added when a body
  is sent without a content-type (aiohttp did; RFC 9110 §8.3). Credentials in the URL become
  ``Authorization: Basic`` (aiohttp did). No ``Accept``/``Accept-Encoding``: replies arrive as sent.
- A reply is parsed by ``httptools.HttpResponseParser`` (llhttp, the parser of Node.js and
  uvicorn), with the leniencies aiohttp's client parser has (bare LF line ends, obsolete line
  folding and invalid bytes in header values, spaces after a chunk size); what it still rejects
  (a header line without a colon, two Content-Length lines, Content-Length with chunked, a bad
  chunk, a status line that is not HTTP/1.0 or 1.1 with a status of 100 or more) is a
  ``ResponseError``. Body by ``Content-Length``, chunked (extensions and trailers read and
  dropped), or until close; 1xx interim replies are skipped (101 is final: returned, and its
  connection closed). Status lines + headers of one reply (its interim replies included) may take
  ``HEAD_LIMIT`` bytes. At most ``reply_limit`` body bytes are kept; a reply with more is cut
  there and its connection closed, unread. A reply to ``HEAD`` ends with its header block (its
  connection is closed: the parser would take the next reply for its body).
- Errors: every one is an ``HttpError`` (under ``mqhook.errors.MqhookError``): ``ConnectError``,
  ``ServerDisconnectedError``, ``ResponseError`` (what llhttp rejects, a header block too large),
  ``RequestTimeout``, ``ClientClosedError``; or ``ValueError`` for a request that cannot be
  written. One raised after the final status line carries the ``Response`` in ``.response``.
  ``request.send_once`` turns them into ``Outcome``s.

Public surface (``__all__``): ``HttpClient`` (the pool: ``request``, ``encode``, ``target``,
``close``), ``HttpConnection`` (one connection; the interface the pool uses is in its docstring),
``Response``, the errors, ``tls_context`` (the one place TLS settings go), ``HEAD_LIMIT`` and
``KEEPALIVE_S``. Runs on the loop thread only; no locks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import quote, unquote, urlsplit

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpResponseParser

from mqhook.errors import MqhookError
from mqhook.webhook.redact import url_without_password

__all__ = [
    "HEAD_LIMIT",
    "KEEPALIVE_S",
    "ClientClosedError",
    "ConnectError",
    "HttpClient",
    "HttpConnection",
    "HttpError",
    "RequestTimeout",
    "Response",
    "ResponseError",
    "ServerDisconnectedError",
    "tls_context",
]

HEAD_LIMIT = 65536  # bytes of a reply's status lines + header blocks (aiohttp: 8190 per line)
KEEPALIVE_S = 15.0  # an idle connection older than this is closed, not reused (aiohttp: 15 s)
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})  # no Content-Length: 0
_FRAMING = frozenset({"host", "content-type", "authorization", "connection", "content-length", "transfer-encoding"})
_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]")  # what a request target may hold as is
_TARGET_SAFE = "/?:@!$&'()*+,;=%~"
_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}  # llhttp also parses HTTP/2.0 and RTSP/ICE lines
_default_tls: ssl.SSLContext | None = None


# -- the reply and the errors --------------------------------------------------------------------
class Response:
    """A reply: ``status``, ``version`` (``b"HTTP/1.1"``), ``headers`` (name and value as sent,
    in order; trailers excluded) and ``body`` (at most the client's ``reply_limit`` bytes)."""

    __slots__ = ("body", "headers", "status", "version")

    def __init__(self, version: bytes, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.version = version
        self.status = status
        self.headers = headers
        self.body = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None. A scan, not a dictionary built
        for every reply: a webhook reads one or two headers of each reply."""
        key = name.lower().encode("ascii")
        n = len(key)
        for field, value in self.headers:
            if len(field) == n and field.lower() == key:
                return value.strip().decode("utf-8", "surrogateescape")
        return None


class HttpError(MqhookError):
    """Base of this module's errors; ``response`` is set if the final status line had arrived."""

    response: Response | None = None


class ConnectError(HttpError):
    """A connection could not be opened (DNS, TCP or TLS); ``os_error`` says why."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {os_error}")
        self.host, self.port, self.os_error = host, port, os_error


class ServerDisconnectedError(HttpError):
    """The connection closed (or reset) before the reply was complete."""


class ResponseError(HttpError):
    """The reply is not HTTP/1.x we can read (llhttp rejected it, header block too large, ...)."""


class ClientClosedError(HttpError):
    """The client was closed."""


class RequestTimeout(HttpError, TimeoutError):
    """``request_timeout`` (or ``connect_timeout``) expired; ``response`` as for ``HttpError``."""


def tls_context() -> ssl.SSLContext:
    """The context for https:// URLs: the default one, verifying certificates and host names
    against the system's CAs (as aiohttp's default). Per-webhook TLS options would build theirs here."""
    global _default_tls
    if _default_tls is None:
        _default_tls = ssl.create_default_context()
    return _default_tls


class _HeadProbe:
    complete = False

    def on_headers_complete(self) -> None:
        self.complete = True


def _status_line_ok(line: bytes) -> bool:
    """Whether llhttp accepts ``line`` as a status line on its own (to name what a parse error hit)."""
    probe = _HeadProbe()
    with contextlib.suppress(HttpParserError, HttpParserUpgrade):
        HttpResponseParser(probe).feed_data(line + b"\r\n\r\n")
    return probe.complete


def _until_close(response: Response) -> bool:
    """Whether the body of ``response`` ends with the connection (llhttp's rule for a response
    that is not 1xx/204/304: a Transfer-Encoding whose last coding is not chunked, or neither
    Transfer-Encoding nor Content-Length)."""
    coding = response.header("transfer-encoding")
    if coding is not None:
        return coding.rsplit(",", 1)[-1].strip().lower() != "chunked"
    return response.header("content-length") is None


# -- one connection ------------------------------------------------------------------------------
class HttpConnection(asyncio.Protocol):
    """One keep-alive connection: writes a request, feeds its reply to llhttp, resolves a future.

    The interface its owner (``HttpClient``'s pool) uses:

    - ``HttpConnection(reply_limit, on_lost)``: ``on_lost(conn)`` is called once the transport
      has closed (for whatever reason), after any pending request was finished or failed;
    - ``send(data, deadline, keep, bodiless=False)``: write one request, return the future of its
      ``Response`` (failed with an ``HttpError``); ``keep``: the request allows keep-alive;
      ``bodiless``: the reply has no body whatever its headers say (a ``HEAD`` request);
    - ``release()``: the caller is done with the exchange; True if the connection may carry
      another request (else it is being closed); an exchange still running is killed;
    - ``busy``, ``dead`` (closed, or must not carry another request), ``got`` (a byte of the
      current reply arrived: a failure must not be re-sent), ``idle_since`` (loop time of the
      last ``release()`` that returned True); ``close()`` and ``kill()`` (abort).

    Bytes arriving when no request waits for them (out of step, or written while idle) kill the
    connection. Parser state lives across requests only when a reply was read whole.
    """

    def __init__(self, reply_limit: int, on_lost: Callable[[HttpConnection], None] | None = None) -> None:
        self.reply_limit = reply_limit
        self.on_lost = on_lost
        self.loop = asyncio.get_running_loop()
        self.parser = HttpResponseParser(self)
        self.parser.set_dangerous_leniencies(  # what aiohttp's response parser allows (not in its dev mode)
            lenient_headers=True, lenient_optional_cr_before_lf=True, lenient_spaces_after_chunk_size=True
        )
        self.transport: asyncio.Transport | None = None
        self.fut: asyncio.Future[Response] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when ``timer`` fires
        self.deadline = 0.0  # of the current request
        self.dead = False  # closed, closing, or in a state where it must not carry another request
        self.reusable = False  # the last reply was read whole and both sides keep the connection
        self.got = False  # a byte of the current reply arrived (then a failure is never re-sent)
        self.idle_since = 0.0
        # The current exchange (reset by ``send``):
        self.keep = False  # both sides keep the connection (so far)
        self.bodiless = False  # the reply ends with its header block (HEAD)
        self.in_head = False  # the final reply's header block is not complete yet
        self.head_room = 0  # bytes the header blocks may still take
        self.seen: list[bytes] = []  # the reply's bytes up to the end of its header block (for errors)
        self.interim = 0  # 1xx replies skipped
        self.headers: list[tuple[bytes, bytes]] = []  # of the message being parsed
        self.response: Response | None = None
        self.done = False  # the final reply was parsed to its end
        self.extra = False  # bytes came after it (the connection is out of step)
        self.error: HttpError | None = None  # found in a parser callback, raised after feed_data
        self.parts: list[bytes] = []
        self.size = 0  # body bytes kept
        self.cut = False  # body bytes past reply_limit were dropped (then the connection is closed)

    # -- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        fut = self.fut
        if fut is None or fut.done():  # bytes nobody asked for: the connection is out of step
            self.kill()
            return
        self.got = True
        try:
            if self.in_head:
                self.feed_head(data)
            else:
                self.parser.feed_data(data)
        except HttpParserCallbackError:
            raise  # a bug in a callback below: the loop logs it and closes the transport
        except (HttpParserError, HttpParserUpgrade) as exc:
            if not self.done:
                self.fail(self.parse_error(exc))
                return
            self.extra = True  # not a reply after the reply (or 101's other protocol): out of step
        if self.error is not None:
            self.fail(self.error)
        elif self.done:
            self.finish(not self.extra)
        elif self.size >= self.reply_limit and self.response is not None:
            self.finish(False)  # reply_limit bytes kept: the rest is not read

    def eof_received(self) -> bool:
        return False  # close; connection_lost finishes or fails the current reply

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        fut = self.fut
        if fut is not None and not fut.done():
            response = self.response
            if response is not None and not self.done and _until_close(response):
                self.finish(False)  # a close-delimited body: the close ends it
            else:
                what = "in the reply's header block" if self.got else "without replying"
                if response is not None:
                    what = "before the end of the reply body"
                why = f" ({exc})" if exc is not None else ""
                self.fail(ServerDisconnectedError(f"server closed the connection {what}{why}"))
        self.close()
        if self.on_lost is not None:
            self.on_lost(self)

    # -- llhttp callbacks (only these names: httptools registers what the protocol has) --------
    def on_message_begin(self) -> None:
        if self.done:
            self.extra = True
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.done:
            return
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.interim += 1  # 100 Continue, 103 Early Hints, ...: the real reply follows
            return
        version = _VERSIONS.get(parser.get_http_version())
        if version is None or status < 100:
            line = b"".join(self.seen).split(b"\n", 1)[0].rstrip(b"\r")
            self.error = ResponseError(f"bad status line {line[:80]!r}")
            return
        self.response = Response(version, status, self.headers)
        self.headers = []  # trailers are not headers
        self.in_head = False
        self.seen = []
        self.keep = self.keep and status != 101 and parser.should_keep_alive()
        if self.bodiless:
            self.done = True
            self.keep = False

    def on_body(self, body: bytes) -> None:
        if self.done or self.response is None:
            return
        room = self.reply_limit - self.size
        if len(body) > room:
            body = body[:room]
            self.cut = True
            if not body:
                return
        self.parts.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.done = True

    # -- one exchange ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A request is waiting for its reply."""
        return self.fut is not None and not self.fut.done()

    def send(self, data: bytes, deadline: float, keep: bool, bodiless: bool = False) -> asyncio.Future[Response]:
        transport = self.transport
        if self.dead or transport is None or transport.is_closing():
            raise ServerDisconnectedError("server closed the connection without replying")
        self.fut = fut = self.loop.create_future()
        self.got = self.reusable = self.cut = self.done = self.extra = False
        self.keep = keep
        self.bodiless = bodiless
        self.in_head = True
        self.head_room = HEAD_LIMIT
        self.seen = []
        self.interim = 0
        self.response = None
        self.error = None
        self.parts = []
        self.size = 0
        self.deadline = deadline
        # One timer serves many requests: a reply that beats its deadline leaves it armed, and
        # when it fires for a finished request it re-arms for the current one (timed_out), so a
        # busy connection creates a timer about once per request_timeout, not once per request.
        if self.timer is None or self.timer_at > deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(deadline, self.timed_out)
            self.timer_at = deadline
        transport.write(data)
        return fut

    def release(self) -> bool:
        """The caller is done with the exchange: True if the connection may carry another request."""
        fut = self.fut
        self.fut = None
        if fut is not None and not fut.done():  # cancelled mid-exchange
            self.kill()
            return False
        if self.reusable and not self.dead:
            self.reusable = False
            self.idle_since = self.loop.time()
            return True
        return False

    def feed_head(self, data: bytes) -> None:
        """Feed bytes that start in a header block, enforcing ``HEAD_LIMIT``."""
        self.seen.append(data)
        room = self.head_room
        if len(data) <= room:
            self.head_room = room - len(data)
            self.parser.feed_data(data)
            return
        view = memoryview(data)
        self.parser.feed_data(view[:room])
        if self.in_head:
            if self.error is None:
                self.error = ResponseError(f"reply status line + headers exceed {HEAD_LIMIT} bytes")
            return
        self.parser.feed_data(view[room:])

    def parse_error(self, exc: Exception) -> ResponseError:
        """A ``ResponseError`` for what llhttp rejected, naming where."""
        reason = str(exc) or type(exc).__name__
        if self.response is not None:
            return ResponseError(f"bad reply body: {reason}")
        line = b"".join(self.seen).split(b"\n", 1)[0].rstrip(b"\r")
        if not self.interim and not _status_line_ok(line):
            return ResponseError(f"bad status line {line[:80]!r}: {reason}")
        return ResponseError(f"bad reply header block: {reason}")

    def timed_out(self) -> None:
        self.timer = None
        fut = self.fut
        if fut is None or fut.done():
            return  # armed for a request that finished in time; none is waiting now
        if self.loop.time() + 0.001 < self.deadline:  # armed for an earlier request: wait for this one
            self.timer = self.loop.call_at(self.deadline, self.timed_out)
            self.timer_at = self.deadline
            return
        exc = RequestTimeout("request_timeout expired waiting for the reply")
        exc.response = self.response
        fut.set_exception(exc)
        self.kill()

    def fail(self, exc: HttpError) -> None:
        exc.response = self.response
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        self.kill()

    def finish(self, complete: bool) -> None:
        """The reply is done: ``complete`` if read to its end, False if cut or closed."""
        response = self.response
        assert response is not None and self.fut is not None
        parts = self.parts
        response.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self.parts = []
        self.done = True
        self.reusable = complete and self.keep and not self.cut and not self.dead
        if not self.reusable:
            self.dead = True
            if self.transport is not None:
                self.transport.close()
        if not self.fut.done():
            self.fut.set_result(response)

    def kill(self) -> None:
        self.reusable = False
        self.close(abort=True)

    def close(self, abort: bool = False) -> None:
        self.dead = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if abort:
                transport.abort()
            else:
                transport.close()


# -- the pool and the request writer -------------------------------------------------------------
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
        self._conns: set[HttpConnection] = set()  # open ones, each holding one of the pool_size slots
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
        bodiless = method == "HEAD"
        retry = True
        while True:
            conn = self._take_idle(loop.time()) if retry else None
            reused = conn is not None
            if conn is None:
                conn, reused = await self._acquire(deadline, fresh=not retry)
            try:
                return await conn.send(data, deadline, keep, bodiless)
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
                    keep = "close" not in [token.strip() for token in value.lower().split(",")]
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
            shown, origin = url_without_password(url[:200]), url_without_password(prefix)
            raise ValueError(f"URL {shown!r} is not on this client's origin {origin!r}")
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
            except BaseException as exc:
                if fut.done() and not fut.cancelled() and fut.exception() is None:  # woken, then cancelled
                    given = fut.result()
                    if given is not None:
                        self._release(given)
                    else:
                        self._wake()
                else:
                    fut.cancel()
                if isinstance(exc, TimeoutError) and not isinstance(exc, HttpError):
                    raise RequestTimeout("request_timeout expired waiting for a pooled connection") from None
                raise
            if handed is not None:
                return handed, True

    async def _connect(self, deadline: float) -> HttpConnection:
        loop = asyncio.get_running_loop()
        self.open += 1
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self.connect_timeout)):
                conn = await self._open(loop)
        except BaseException as exc:
            self.open -= 1
            self._wake()
            if isinstance(exc, TimeoutError) and not isinstance(exc, HttpError):
                raise RequestTimeout(f"no connection to {self.host}:{self.port} in time") from None
            raise
        if self._closed:
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
                    lambda: HttpConnection(self.reply_limit, self._lost),
                    sock=sock,
                    ssl=self.ssl,
                    server_hostname=server_hostname,
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
        if conn.release() and not self._closed:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            self._idle.append(conn)
        else:
            self._drop(conn)

    def _drop(self, conn: HttpConnection) -> None:
        conn.close()
        if conn in self._conns:
            self._conns.discard(conn)
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
        """``on_lost`` of every connection: an idle one leaves the pool now (a busy one on release)."""
        if conn in self._idle:
            self._idle.remove(conn)
            self._drop(conn)

    async def close(self) -> None:
        """Close every connection; later requests raise ``ClientClosedError``."""
        self._closed = True
        for conn in list(self._conns):
            conn.close(abort=conn.busy)
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ClientClosedError("the HTTP client is closed"))
        await asyncio.sleep(0)  # let the transports run connection_lost
