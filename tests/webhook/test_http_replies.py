"""Replies as ``mqhook.webhook.http`` parses them (httptools / llhttp), over real sockets on 127.0.0.1.

Replies are written byte for byte by ``rawhttp.RawServer``; where a reply must arrive in given
pieces, the server writes one and waits until the client has read it (``rawhttp.Wire``), so each
piece is exactly one ``data_received``. No test sleeps; every body runs under ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio

import pytest

from mqhook.errors import MqhookError
from mqhook.webhook import http
from mqhook.webhook.http import (
    HEAD_LIMIT,
    ClientClosedError,
    ConnectError,
    HttpError,
    RequestTimeout,
    Response,
    ResponseError,
    ServerDisconnectedError,
)
from mqhook.webhook.request import REPLY_LIMIT, RenderRefused

from .rawhttp import OK, RawConn, RawServer, Wire, bounded, client_for, forever, keep_alive, send

CHUNKED = (
    b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
    b'5;ext=1;q="a b"\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\nRetry-After: 99\r\n\r\n'
)
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" + OK
HTTP10_KEEP = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\nok"
REPLIES = {  # name: (reply, status, body, Retry-After)
    "length": (OK, 200, b'{"result": "ok"}', None),
    "chunked": (CHUNKED, 503, b"hello, world", "7"),
    "100-continue": (INTERIM, 200, b'{"result": "ok"}', None),
    "http-1.0-keep-alive": (HTTP10_KEEP, 200, b"ok", "3"),
}


# -- framing, whatever the reads --------------------------------------------------------------
@pytest.mark.parametrize("name", list(REPLIES))
def test_reply_split_at_every_byte_boundary(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One keep-alive connection; request k gets its reply in two reads, split after byte k."""
    reply, status, body_, retry_after = REPLIES[name]
    wire = Wire(monkeypatch)

    async def serve(conn: RawConn) -> None:
        for k in range(1, len(reply)):
            assert await conn.request() is not None
            await wire.write_read(conn, reply[:k])
            await wire.write_read(conn, reply[k:])
        await conn.request()

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        for k in range(1, len(reply)):
            out = await send(client, srv.url())
            assert (out.status, out.reply, out.retry_after, out.error) == (status, body_, retry_after, None), k
        assert srv.accepted == 1  # every reply was read whole: the connection was kept throughout
        assert wire.reads == [n for k in range(1, len(reply)) for n in (k, len(reply) - k)]
        await client.close()
        await srv.stop()

    bounded(body(), 30.0)


def test_reply_dripped_one_byte_per_read(monkeypatch: pytest.MonkeyPatch) -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\n" + CHUNKED
    wire = Wire(monkeypatch)

    async def serve(conn: RawConn) -> None:
        while await conn.request() is not None:
            for i in range(len(reply)):
                await wire.write_read(conn, reply[i : i + 1])

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        for _ in range(2):
            out = await send(client, srv.url())
            assert (out.status, out.reply, out.retry_after) == (503, b"hello, world", "7")
        assert srv.accepted == 1 and wire.reads == [1] * (2 * len(reply))
        await client.close()
        await srv.stop()

    bounded(body(), 30.0)


def test_100_continue_read_before_the_real_reply_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = Wire(monkeypatch)

    async def serve(conn: RawConn) -> None:
        await conn.request()
        await wire.write_read(conn, b"HTTP/1.1 100 Continue\r\n\r\n")  # the client has it, and must wait on
        await conn.reply(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")
        await forever()

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        out = await send(client, srv.url())
        assert (out.status, out.kind, out.reply, out.error) == (201, "2xx", b"done", None)
        await client.close()
        await srv.stop()

    bounded(body())


def test_trailers_are_not_headers() -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive(CHUNKED)).start()
        client = client_for(srv.url())
        resp = await client.request("POST", srv.url(), {}, b"{}")
        assert (resp.status, resp.version, resp.body) == (503, b"HTTP/1.1", b"hello, world")
        assert resp.header("retry-after") == "7" and resp.header("X-Trailer") is None
        assert resp.header("TRANSFER-ENCODING") == "chunked"
        await client.close()
        await srv.stop()

    bounded(body())


def test_close_delimited_reply_longer_than_reply_limit_is_cut() -> None:
    big = bytes(range(256)) * 400  # 102400 bytes, then the server closes

    async def serve(conn: RawConn) -> None:
        await conn.request()
        await conn.reply(b"HTTP/1.1 200 OK\r\n\r\n" + big)

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        out = await send(client, srv.url())
        assert (out.status, out.error, out.reply) == (200, None, big[:REPLY_LIMIT])
        await client.close()
        await srv.stop()

    bounded(body())


def test_lenient_as_aiohttp_bare_lf_folded_header_spaces_after_chunk_size() -> None:
    reply = b"HTTP/1.1 429 Too Many\nRetry-After: 5\nX-Fold: a\n b\nTransfer-Encoding: chunked\n\n2 \r\nok\r\n0\r\n\r\n"

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()
        client = client_for(srv.url())
        for _ in range(2):
            out = await send(client, srv.url())
            assert (out.status, out.kind, out.reply, out.retry_after, out.error) == (429, "4xx", b"ok", "5", None)
        assert srv.accepted == 1
        await client.close()
        await srv.stop()

    bounded(body())


# -- keep-alive, from the parser ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "kept"),
    [
        (b"HTTP/1.1 200 OK\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: CLOSE\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: x-closed-later\r\n", True),  # a token, not a substring
        (b"HTTP/1.0 200 OK\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n", True),
    ],
)
def test_keep_alive_is_what_the_parser_says(head: bytes, kept: bool) -> None:
    reply = head + b"Content-Length: 2\r\n\r\nok"

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()  # keeps its side open either way
        client = client_for(srv.url())
        for _ in range(3):
            out = await send(client, srv.url())
            assert (out.status, out.reply, out.error) == (200, b"ok", None)
        assert srv.accepted == (1 if kept else 3)
        await client.close()
        await srv.stop()

    bounded(body())


@pytest.mark.parametrize(("value", "kept"), [("Keep-Alive", True), ("close", False), ("TE, Close", False)])
def test_connection_header_of_the_request(value: str, kept: bool) -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive()).start()
        client = client_for(srv.url())
        for _ in range(3):
            assert (await send(client, srv.url(), {"Connection": value})).status == 200
        assert srv.accepted == (1 if kept else 3)
        await client.close()
        await srv.stop()

    bounded(body())


def test_101_switching_protocols_is_returned_and_its_connection_closed() -> None:
    reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x00"

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()
        client = client_for(srv.url())
        for _ in range(2):
            out = await send(client, srv.url())
            assert (out.status, out.kind, out.reply, out.error) == (101, "other_status", b"", None)
        assert srv.accepted == 2
        await client.close()
        await srv.stop()

    bounded(body())


def test_reply_to_head_ends_with_its_header_block() -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")).start()
        client = client_for(srv.url())
        resp = await client.request("HEAD", srv.url(), {}, None)
        assert (resp.status, resp.header("content-length"), resp.body) == (200, "1234", b"")
        assert srv.requests[0].startswith(b"HEAD /hook HTTP/1.1\r\n")
        resp = await client.request("HEAD", srv.url(), {}, None)
        assert resp.status == 200 and srv.accepted == 2  # not reused: llhttp would take the next reply for a body
        await client.close()
        await srv.stop()

    bounded(body())


def test_bytes_written_to_an_idle_connection_kill_it(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = Wire(monkeypatch)

    async def serve(conn: RawConn) -> None:
        await conn.request()
        await wire.write_read(conn, OK)
        await conn.reply(b"HTTP/1.1 200 OK\r\n")  # nobody asked: the client must drop the connection
        await conn.request()  # EOF (or reset)

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        assert (await send(client, srv.url())).status == 200
        await wire.until(lambda: wire.lost == 1)
        assert client.open == 0
        out = await send(client, srv.url())
        assert (out.status, out.error) == (200, None)
        assert srv.accepted == 2
        await client.close()
        await srv.stop()

    bounded(body())


# -- malformed replies ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "status", "error"),
    [
        (b"HTTP/1.1 2x0 OK\r\n\r\n", None, "ResponseError: bad status line b'HTTP/1.1 2x0 OK': "),
        (b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", None, "ResponseError: bad status line b'HTTP/2.0 200 OK'"),
        (b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", None, "ResponseError: bad status line b'HTTP/1.1 099 Low'"),
        (b"hello\r\n", None, "ResponseError: bad status line b'hello': "),
        (b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", None, "ResponseError: bad reply header block: "),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            None,
            "ResponseError: bad reply header block: Duplicate Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            None,
            "ResponseError: bad reply header block: ",
        ),
        (
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
            500,  # the status had come: the outcome keeps it
            "ResponseError: bad reply body: ",
        ),
    ],
)
def test_malformed_reply_is_a_response_error(reply: bytes, status: int | None, error: str) -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()
        client = client_for(srv.url())
        for _ in range(2):
            out = await send(client, srv.url())
            assert out.status == status and out.kind == ("connection_error" if status is None else "5xx")
            assert out.error is not None and out.error.startswith(error), out.error
        assert srv.accepted == 2  # a connection whose reply could not be read is never reused
        with pytest.raises(ResponseError) as caught:
            await client.request("POST", srv.url(), {}, b"{}")
        resp = caught.value.response
        assert (resp and resp.status) == status
        await client.close()
        await srv.stop()

    bounded(body())


@pytest.mark.parametrize("extra", [0, 1])
def test_header_block_limit_is_exact(extra: int) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: \r\n\r\n"
    head = head.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (HEAD_LIMIT - len(head) + extra))
    assert len(head) == HEAD_LIMIT + extra

    async def body() -> None:
        srv = await RawServer(keep_alive(head + b"ok")).start()
        client = client_for(srv.url())
        out = await send(client, srv.url())
        if extra:
            assert (out.status, out.kind) == (None, "connection_error")
            assert out.error == f"ResponseError: reply status line + headers exceed {HEAD_LIMIT} bytes"
        else:
            assert (out.status, out.reply, out.error) == (200, b"ok", None)
        await client.close()
        await srv.stop()

    bounded(body())


def test_endless_header_block_is_cut_at_head_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = Wire(monkeypatch)
    sent = 0

    async def serve(conn: RawConn) -> None:
        nonlocal sent
        await conn.request()
        await wire.write_read(conn, b"HTTP/1.1 200 OK\r\nX-Endless: ")
        while wire.lost == 0:  # 4 KiB a read, until the client gives up
            sent += 4096
            await wire.write_read(conn, b"e" * 4096)

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        out = await send(client, srv.url())
        assert out.error == f"ResponseError: reply status line + headers exceed {HEAD_LIMIT} bytes"
        assert HEAD_LIMIT - 4096 < sent <= HEAD_LIMIT + 4096
        await client.close()
        await srv.stop()

    bounded(body())


def test_interim_replies_count_in_the_head_limit() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </" + b"a" * 1000 + b">\r\n\r\n"
    reply = early * (HEAD_LIMIT // len(early) + 1) + OK

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()
        client = client_for(srv.url())
        out = await send(client, srv.url())
        assert out.error == f"ResponseError: reply status line + headers exceed {HEAD_LIMIT} bytes"
        await client.close()
        await srv.stop()

    bounded(body())


def test_error_after_the_status_line_carries_the_response() -> None:
    async def serve(conn: RawConn) -> None:
        await conn.request()
        await conn.reply(b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 10\r\n\r\nabc")  # then closes

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        with pytest.raises(ServerDisconnectedError) as caught:
            await client.request("POST", srv.url(), {}, b"{}")
        resp = caught.value.response
        assert resp is not None and (resp.status, resp.header("Retry-After")) == (503, "2")
        assert str(caught.value) == "server closed the connection before the end of the reply body"
        out = await send(client, srv.url())
        assert (out.status, out.kind, out.retry_after) == (503, "5xx", "2")
        await client.close()
        await srv.stop()

    bounded(body())


# -- errors -----------------------------------------------------------------------------------
def test_every_error_is_an_mqhook_error() -> None:
    for cls in (HttpError, ConnectError, ServerDisconnectedError, ResponseError, ClientClosedError, RequestTimeout):
        assert issubclass(cls, HttpError) and issubclass(cls, MqhookError), cls
    assert issubclass(RequestTimeout, TimeoutError)
    assert issubclass(RenderRefused, MqhookError)
    assert set(http.__all__) >= {"HttpClient", "HttpConnection", "Response", "HttpError", "tls_context"}


def test_pool_wait_and_exchange_time_out_as_request_timeout() -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive(before=forever)).start()
        client = client_for(srv.url(), pool_size=1, request_timeout=0.2)
        results = await asyncio.gather(
            *[client.request("POST", srv.url(), {}, b"{}") for _ in range(2)], return_exceptions=True
        )
        for exc in results:
            assert isinstance(exc, RequestTimeout) and isinstance(exc, MqhookError) and exc.response is None
        assert client.open <= 1
        await client.close()
        await srv.stop()

    bounded(body())


def test_response_header_lookup() -> None:
    resp = Response(b"HTTP/1.1", 200, [(b"Retry-After", b" 5 "), (b"retry-after", b"6"), (b"X-U", b"\xc3\xa9")])
    assert (resp.header("RETRY-after"), resp.header("x-u"), resp.header("missing")) == ("5", "é", None)
