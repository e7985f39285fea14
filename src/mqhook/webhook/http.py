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
from typing import cast
from urllib.parse import quote, unquote, urlsplit

HEAD_LIMIT = 65536  # bytes of a reply's status line + header block (aiohttp: 8190 per line)
LINE_LIMIT = 4096  # bytes of a chunk-size line
KEEPALIVE_S = 15.0  # an idle connection older than this is closed, not reused (aiohttp: 15 s)
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})  # no Content-Length: 0
_FRAMING = frozenset({"host", "content-type", "authorization", "connection", "content-length", "transfer-encoding"})
_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]")  # what a request target may hold as is
_TARGET_SAFE = "/?:@!$&'()*+,;=%~"
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_EOF, _IDLE = range(8)
_default_tls: ssl.SSLContext | None = None


class Response:
    """A reply: its status, its header block (``head``, status line included) and the body kept.

    Header values are found with ``header(name)``: a search of the lower-cased block, not a
    dictionary built for every reply (a webhook reads one or two headers of each reply)."""

    __slots__ = ("body", "head", "lower", "status", "version")

    def __init__(self, version: bytes, status: int, head: bytes, lower: bytes) -> None:
        self.version = version
        self.status = status
        self.head = head
        self.lower = lower
        self.body = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        value = _field(self.head, self.lower, b"\n" + name.lower().encode("ascii") + b":")
        return None if value is None else value.decode("utf-8", "surrogateescape")


def _field(head: bytes, lower: bytes, key: bytes, start: int = 0) -> bytes | None:
    """The value of the first header line at or after ``start`` that begins ``key`` (b"\\nname:")."""
    i = lower.find(key, start)
    if i < 0:
        return None
    i += len(key)
    j = lower.find(b"\n", i)
    return head[i:j].strip() if j >= 0 else head[i:].strip()


class HttpError(Exception):
    """Base of this module's errors; ``response`` is set if the status line had arrived."""

    response: Response | None = None


class ConnectError(HttpError):
    """A connection could not be opened (DNS, TCP or TLS); ``os_error`` says why."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {os_error}")
        self.host, self.port, self.os_error = host, port, os_error


class ServerDisconnectedError(HttpError):
    """The connection closed (or reset) before the reply was complete."""


class ResponseError(HttpError):
    """The reply is not HTTP/1.x we can read (bad status line, header block too large, ...)."""


class ClientClosedError(HttpError):
    """The client was closed."""


class RequestTimeout(TimeoutError):
    """``request_timeout`` (or ``connect_timeout``) expired; ``response`` as for ``HttpError``."""

    response: Response | None = None


def tls_context() -> ssl.SSLContext:
    """The context for https:// URLs: the default one, verifying certificates and host names
    against the system's CAs (as aiohttp's default). Per-webhook TLS options would build theirs here."""
    global _default_tls
    if _default_tls is None:
        _default_tls = ssl.create_default_context()
    return _default_tls


class _Conn(asyncio.Protocol):
    """One connection: writes a request, parses its reply in ``data_received``, resolves ``fut``."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.fut: asyncio.Future[Response] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when ``timer`` fires
        self.deadline = 0.0  # of the current request
        self.dead = False  # closed, closing, or in a state where it must not carry another request
        self.reusable = False  # the last reply was read whole and both sides keep the connection
        self.got = False  # a byte of the current reply arrived (then a failure is never re-sent)
        self.cut = False  # body bytes past reply_limit were dropped (then the connection is closed)
        self.counted = True  # holds one of the client's pool_size slots
        self.idle_since = 0.0
        self.keep = False
        self.state = _IDLE
        self.buf = b""  # unparsed bytes (a partial head or chunk line)
        self.response: Response | None = None
        self.parts: list[bytes] = []
        self.size = 0  # body bytes kept
        self.left = 0  # bytes left of the Content-Length body or of the current chunk

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
            self.feed(self.buf + data if self.buf else data)
        except HttpError as exc:
            self.fail(exc)

    def eof_received(self) -> bool:
        return False  # close; connection_lost finishes or fails the current reply

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        fut = self.fut
        if fut is not None and not fut.done():
            if self.state == _UNTIL_EOF:
                self.finish(False)
            else:
                what = "in the reply's header block" if self.got else "without replying"
                if self.state != _HEAD:
                    what = "before the end of the reply body"
                why = f" ({exc})" if exc is not None else ""
                self.fail(ServerDisconnectedError(f"server closed the connection {what}{why}"))
        self.close()
        self.client._lost(self)

    # -- one exchange ------------------------------------------------------------------------
    def send(self, data: bytes, deadline: float, keep: bool) -> asyncio.Future[Response]:
        transport = self.transport
        if self.dead or transport is None or transport.is_closing():
            raise ServerDisconnectedError("server closed the connection without replying")
        self.fut = fut = self.loop.create_future()
        self.got = self.reusable = self.cut = False
        self.keep = keep
        self.state = _HEAD
        self.response = None
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

    def timed_out(self) -> None:
        self.timer = None
        fut = self.fut
        if fut is None or fut.done():
            return  # armed for a request that finished in time; none is waiting now
        if self.loop.time() + 0.001 < self.deadline:  # armed for an earlier request: wait for this one
            self.timer = self.loop.call_at(self.deadline, self.timed_out)
            self.timer_at = self.deadline
            return
        exc = RequestTimeout()
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
        self.state = _IDLE
        self.buf = b""
        self.reusable = complete and self.keep and not self.cut and not self.dead
        if not self.reusable:
            self.dead = True
            if self.transport is not None:
                self.transport.close()
        if not self.fut.done():
            self.fut.set_result(response)

    def kill(self) -> None:
        self.dead = True
        self.reusable = False
        self.close(abort=True)

    def close(self, abort: bool = False) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if abort:
                transport.abort()
            else:
                transport.close()

    # -- the reply parser --------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Consume ``data`` (any split); keeps an incomplete head or line in ``self.buf``."""
        self.buf = b""
        pos, n = 0, len(data)
        while pos < n:
            state = self.state
            if state in (_LENGTH, _CHUNK_DATA):
                take = min(self.left, n - pos)
                self.left -= take
                full = self.keep_body(data[pos : pos + take] if take < n or pos else data)
                pos += take
                if self.left == 0:
                    if state == _CHUNK_DATA:
                        self.state = _CHUNK_END
                        continue
                    self.finish(pos == n)  # bytes after the reply: out of step, not reusable
                    return
                if full:
                    self.finish(False)
                    return
            elif state == _HEAD:
                pos = self.head(data, pos)
                if pos < 0:
                    return
            elif state == _UNTIL_EOF:
                if self.keep_body(data[pos:] if pos else data):
                    self.finish(False)
                return
            elif state == _IDLE:  # bytes after a finished reply
                self.kill()
                return
            else:  # chunk framing: one line at a time
                eol = data.find(b"\n", pos)
                if eol < 0:
                    if n - pos > (HEAD_LIMIT if state == _TRAILER else LINE_LIMIT):
                        raise ResponseError(f"chunk framing line exceeds {LINE_LIMIT} bytes")
                    self.buf = data[pos:]
                    return
                line = data[pos:eol].rstrip(b"\r")
                pos = eol + 1
                self.chunk_line(state, line)
                if self.state == _IDLE:
                    self.finish(pos == n)
                    return

    def chunk_line(self, state: int, line: bytes) -> None:
        if state == _CHUNK_SIZE:
            size = line.split(b";", 1)[0].strip()
            if not size or size.strip(b"0123456789abcdefABCDEF") or len(size) > 15:
                raise ResponseError(f"bad chunk size line {line[:40]!r}")
            self.left = int(size, 16)
            self.state = _CHUNK_DATA if self.left else _TRAILER
        elif state == _CHUNK_END:
            if line:
                raise ResponseError(f"chunk data not followed by CRLF: {line[:40]!r}")
            self.state = _CHUNK_SIZE
        elif not line:  # _TRAILER: an empty line ends the body
            self.state = _IDLE

    def keep_body(self, chunk: bytes) -> bool:
        """Keep what fits of ``chunk``; True once ``reply_limit`` bytes are kept."""
        room = self.client.reply_limit - self.size
        if len(chunk) > room:
            chunk = chunk[:room]
            self.cut = True
        if chunk:
            self.parts.append(chunk)
            self.size += len(chunk)
        return self.size >= self.client.reply_limit

    def head(self, data: bytes, pos: int) -> int:
        """Parse one status line + header block at ``pos``; the position after it, or -1 if incomplete."""
        end = data.find(b"\r\n\r\n", pos)
        skip = 4
        if end < 0:
            end = data.find(b"\n\n", pos)  # bare LF line ends (lenient, as most clients)
            skip = 2
        if end < 0 or end - pos > HEAD_LIMIT:
            if len(data) - pos > HEAD_LIMIT:
                raise ResponseError(f"reply status line + headers exceed {HEAD_LIMIT} bytes")
            self.buf = data[pos:]
            return -1
        head = data[pos : end + 2]  # ends with the last header line's LF: every value is LF-terminated
        eol = head.find(b"\n")
        status_line = head[:eol].rstrip(b"\r")
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit() or rest[3:4] not in (b"", b" "):
            raise ResponseError(f"bad status line {status_line[:80]!r}")
        status = int(code)
        if status < 100:
            raise ResponseError(f"bad status line {status_line[:80]!r}")
        pos = end + skip
        if status < 200 and status != 101:
            return pos  # an interim reply (100 Continue, 103 Early Hints): the real one follows
        lower = head.lower()
        self.response = Response(version, status, head, lower)
        # Only what framing needs is looked up; a line without a colon or obsolete folding is not
        # rejected (lenient, as browsers), and only the first Transfer-Encoding line counts.
        keep = self.keep and version != b"HTTP/1.0"
        at = lower.find(b"\nconnection:")
        while at >= 0:
            tokens = _field(head, lower, b"\nconnection:", at) or b""
            if b"close" in tokens.lower():
                keep = False
                break
            if b"keep-alive" in tokens.lower() and self.keep:
                keep = True
            at = lower.find(b"\nconnection:", at + 1)
        self.keep = keep
        if status in (204, 304) or status == 101:
            self.keep = keep and status != 101
            self.finish(pos == len(data))
            return -1
        coding = _field(head, lower, b"\ntransfer-encoding:")
        if coding is not None and coding.lower().rsplit(b",", 1)[-1].strip() == b"chunked":
            self.state = _CHUNK_SIZE
            return pos
        length = _field(head, lower, b"\ncontent-length:")
        if length is None:
            self.keep = False
            self.state = _UNTIL_EOF
            return pos
        again = lower.find(b"\ncontent-length:", lower.find(b"\ncontent-length:") + 1)
        if not length.isdigit() or (again >= 0 and _field(head, lower, b"\ncontent-length:", again) != length):
            raise ResponseError(f"bad Content-Length {length[:40]!r}")
        self.left = int(length)
        if not self.left:
            self.finish(pos == len(data))
            return -1
        self.state = _LENGTH
        return pos


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
        self._idle: list[_Conn] = []
        self._conns: set[_Conn] = set()
        self._waiters: deque[asyncio.Future[_Conn | None]] = deque()
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
    def _take_idle(self, now: float) -> _Conn | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.dead and now - conn.idle_since <= KEEPALIVE_S:
                return conn
            self._drop(conn)
        return None

    async def _acquire(self, deadline: float, fresh: bool = False) -> tuple[_Conn, bool]:
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
            fut: asyncio.Future[_Conn | None] = loop.create_future()
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

    async def _connect(self, deadline: float) -> _Conn:
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

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Conn:
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
                    lambda: _Conn(self), sock=sock, ssl=self.ssl, server_hostname=server_hostname
                )
                return conn
            except OSError as exc:  # ssl.SSLError (e.g. certificate verify failed) is an OSError
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        raise ConnectError(self.host, self.port, error)

    def _release(self, conn: _Conn) -> None:
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

    def _drop(self, conn: _Conn) -> None:
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

    def _lost(self, conn: _Conn) -> None:
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
