"""One webhook HTTP/1.1 connection: writes a request, parses its reply; the errors and ``Response``.

``HttpConnection`` is the ``asyncio.Protocol`` of one keep-alive connection of ``http.HttpClient`` (which
owns the pool and the request encoding). Reply parsing happens in ``data_received``: the status
line and headers (at most ``HEAD_LIMIT`` bytes), then the body by ``Content-Length``, chunked
(chunk-size lines at most ``LINE_LIMIT`` bytes), or until close; 1xx interim replies are skipped;
at most the client's ``reply_limit`` body bytes are kept (more: cut, and the connection closed).
Runs on the loop thread only.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from mqhook.webhook.http import HttpClient

HEAD_LIMIT = 65536  # bytes of a reply's status line + header block (aiohttp: 8190 per line)
LINE_LIMIT = 4096  # bytes of a chunk-size line
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


class HttpConnection(asyncio.Protocol):
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
