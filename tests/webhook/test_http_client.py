"""The delivery HTTP client (``mqhook.webhook.http``) against real sockets on 127.0.0.1.

Well-behaved receivers are aiohttp servers (``kit.Receiver``); misbehaviour (chunk framing,
close-delimited bodies, interim replies, huge headers, closing idle connections, never
answering) comes from ``rawhttp.RawServer``, a bare asyncio server whose replies are written
here byte for byte. Tests wait for conditions (``RawServer.until``, ``rawhttp.Wire``: what the
client read), never for time; every test body runs under ``asyncio.timeout``. More on the
parsing of replies in ``test_http_replies.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from aiohttp import web

from mqhook.webhook.request import REPLY_LIMIT

from .kit import Received, Receiver, free_port
from .rawhttp import OK, RawConn, RawServer, Wire, bounded, client_for, forever, keep_alive, send


# -- reply framing ---------------------------------------------------------------------------
def test_keep_alive_connection_is_reused() -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive()).start()
        client = client_for(srv.url())
        for _ in range(10):
            out = await send(client, srv.url())
            assert (out.status, out.kind, out.reply, out.error) == (200, "2xx", b'{"result": "ok"}', None)
        assert srv.accepted == 1
        await client.close()
        await srv.stop()

    bounded(body())


def test_chunked_reply_with_extensions_and_trailers_then_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    chunked = (
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    wire = Wire(monkeypatch)

    async def serve(conn: RawConn) -> None:
        while await conn.request() is not None:
            for i in range(0, len(chunked), 7):  # odd splits: inside sizes, data and CRLFs
                await wire.write_read(conn, chunked[i : i + 7])  # each piece is one read of the client

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        for _ in range(2):
            out = await send(client, srv.url())
            assert (out.status, out.kind, out.reply, out.retry_after) == (503, "5xx", b"hello, world", "7")
        assert srv.accepted == 1  # the chunked body was read to its end: the connection was reused
        assert wire.reads == [len(chunked[i : i + 7]) for i in range(0, len(chunked), 7)] * 2  # piece = read
        await client.close()
        await srv.stop()

    bounded(body())


def test_chunked_reply_from_aiohttp() -> None:
    async def chunked(rec: Received, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=202)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"a" * 1000, b"b" * 3000, b"c"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def body() -> None:
        rx = await Receiver(chunked).start()
        client = client_for(rx.url())
        out = await send(client, rx.url())
        assert (out.status, out.kind, out.reply) == (202, "2xx", b"a" * 1000 + b"b" * 3000 + b"c")
        await client.close()
        await rx.stop()

    bounded(body())


def test_close_delimited_reply_without_content_length(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = Wire(monkeypatch)

    async def serve(conn: RawConn) -> None:
        await conn.request()
        await wire.write_read(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await conn.reply(b"part two")  # then the server closes: that ends the body

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        for _ in range(2):
            out = await send(client, srv.url())
            assert (out.status, out.reply, out.error) == (200, b"part one, part two", None)
        assert srv.accepted == 2  # such a reply always ends its connection
        await client.close()
        await srv.stop()

    bounded(body())


def test_interim_1xx_replies_are_skipped() -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" + OK

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()
        client = client_for(srv.url())
        for _ in range(2):
            out = await send(client, srv.url())
            assert (out.status, out.kind, out.reply) == (200, "2xx", b'{"result": "ok"}')
        assert srv.accepted == 1
        await client.close()
        await srv.stop()

    bounded(body())


def test_http_1_0_reply_without_keep_alive_closes() -> None:
    reply = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()  # the server would keep it: the client must not
        client = client_for(srv.url())
        for _ in range(2):
            assert (await send(client, srv.url())).reply == b"ok"
        assert srv.accepted == 2
        await client.close()
        await srv.stop()

    bounded(body())


def test_redirect_is_not_followed() -> None:
    reply = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()
        client = client_for(srv.url())
        out = await send(client, srv.url())
        assert (out.status, out.kind, out.reply) == (302, "3xx", b"")
        await client.close()
        await srv.stop()

    bounded(body())


# -- reply size ------------------------------------------------------------------------------
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_reply_larger_than_reply_limit_is_cut_and_connection_not_reused(framing: str) -> None:
    big = bytes(range(256)) * 400  # 102400 bytes
    if framing == "length":
        reply = b"HTTP/1.1 400 Bad\r\nContent-Length: %d\r\n\r\n" % len(big) + big
    else:
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(big[i : i + 10000]), big[i : i + 10000]) for i in range(0, len(big), 10000)
        )
        reply = b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()
        client = client_for(srv.url())
        for _ in range(2):
            out = await send(client, srv.url())
            assert (out.status, out.kind, out.error) == (400, "4xx", None)
            assert out.reply == big[:REPLY_LIMIT]
        assert srv.accepted == 2
        await client.close()
        await srv.stop()

    bounded(body())


def test_reply_of_exactly_reply_limit_keeps_the_connection() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % REPLY_LIMIT + b"x" * REPLY_LIMIT

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()
        client = client_for(srv.url())
        for _ in range(2):
            assert len((await send(client, srv.url())).reply) == REPLY_LIMIT
        assert srv.accepted == 1
        await client.close()
        await srv.stop()

    bounded(body())


def test_header_block_too_large_is_a_connection_error() -> None:
    reply = b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 70000 + b"\r\nContent-Length: 0\r\n\r\n"

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()
        client = client_for(srv.url())
        out = await send(client, srv.url())
        assert (out.status, out.kind) == (None, "connection_error")
        assert out.error == "ResponseError: reply status line + headers exceed 65536 bytes"
        await client.close()
        await srv.stop()

    bounded(body())


def test_garbage_status_line_is_a_connection_error() -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")).start()
        client = client_for(srv.url())
        out = await send(client, srv.url())
        assert (out.status, out.kind) == (None, "connection_error")
        assert out.error is not None and out.error.startswith("ResponseError: bad status line b'SSH-2.0")
        await client.close()
        await srv.stop()

    bounded(body())


# -- connection reuse and closing ------------------------------------------------------------
def test_server_closes_idle_connection_then_next_request_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = Wire(monkeypatch)

    async def serve(conn: RawConn) -> None:
        await conn.request()
        await conn.reply(OK)  # says nothing about closing, then closes while the client is idle

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        assert (await send(client, srv.url())).status == 200
        await wire.until(lambda: wire.lost == 1)  # the FIN arrived while the connection was idle in the pool
        assert client.open == 0
        out = await send(client, srv.url())
        assert (out.status, out.error) == (200, None)
        assert srv.accepted == 2 and client.open == 1
        await client.close()
        await srv.stop()

    bounded(body())


def test_request_crossing_the_servers_close_is_sent_again_on_a_fresh_connection() -> None:
    async def serve(conn: RawConn) -> None:
        await conn.request()
        await conn.reply(OK)
        await conn.request()  # the second request on this connection: closed without a reply

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        assert (await send(client, srv.url())).status == 200
        out = await send(client, srv.url())
        assert (out.status, out.error) == (200, None)
        assert srv.accepted == 2 and len(srv.requests) == 3
        await client.close()
        await srv.stop()

    bounded(body())


def test_no_reply_on_a_fresh_connection_is_not_sent_again() -> None:
    async def serve(conn: RawConn) -> None:
        await conn.request()  # then close without a reply

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url())
        out = await send(client, srv.url())
        assert (out.status, out.kind) == (None, "connection_error")
        assert out.error == "ServerDisconnectedError: server closed the connection without replying"
        assert len(srv.requests) == 1 and srv.accepted == 1
        await client.close()
        await srv.stop()

    bounded(body())


@pytest.mark.parametrize("side", ["server", "client"])
def test_connection_close_is_honoured(side: str) -> None:
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok" if side == "server" else OK

    async def body() -> None:
        srv = await RawServer(keep_alive(reply)).start()  # keeps its side open either way
        client = client_for(srv.url())
        headers = {"Connection": "close"} if side == "client" else {}
        for _ in range(3):
            assert (await send(client, srv.url(), headers)).status == 200
        assert srv.accepted == 3
        await client.close()
        await srv.stop()

    bounded(body())


def test_bytes_after_a_complete_reply_mean_the_connection_is_not_reused() -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive(OK + b"HTTP/1.1 200 OK\r\n")).start()
        client = client_for(srv.url())
        for _ in range(2):
            assert (await send(client, srv.url())).status == 200
        assert srv.accepted == 2
        await client.close()
        await srv.stop()

    bounded(body())


def test_pool_never_exceeds_pool_size() -> None:
    async def body() -> None:
        async def all_connected() -> None:  # no reply before the client opened its 3 connections
            await srv.until(lambda: srv.accepted == 3)

        srv = await RawServer(keep_alive(before=all_connected)).start()
        client = client_for(srv.url(), pool_size=3)
        outs = await asyncio.gather(*[send(client, srv.url()) for _ in range(30)])
        assert [o.status for o in outs] == [200] * 30
        assert srv.accepted == 3 and srv.max_active == 3 and client.open == 3
        await client.close()
        await srv.stop()

    bounded(body())


def test_close_closes_every_connection() -> None:
    async def serve(conn: RawConn) -> None:
        while await conn.request() is not None:
            await conn.reply(OK)
        srv.eofs += 1
        srv.notify()

    srv = RawServer(serve)

    async def body() -> None:
        await srv.start()
        client = client_for(srv.url(), pool_size=4)
        await asyncio.gather(*[send(client, srv.url()) for _ in range(4)])
        assert srv.accepted == 4
        await client.close()
        await srv.until(lambda: srv.eofs == 4 and srv.active == 0)
        out = await send(client, srv.url())
        assert out.error == "ClientClosedError: the HTTP client is closed"
        await srv.stop()

    bounded(body())


# -- failures --------------------------------------------------------------------------------
def test_connect_refused() -> None:
    async def body() -> None:
        port = free_port()
        client = client_for(f"http://127.0.0.1:{port}/x")
        out = await send(client, f"http://127.0.0.1:{port}/x")
        assert (out.status, out.kind) == (None, "connection_error")
        assert out.error == f"cannot connect to 127.0.0.1:{port}: connection refused"
        await client.close()

    bounded(body())


def test_server_that_never_answers_times_out_within_request_timeout() -> None:
    async def serve(conn: RawConn) -> None:
        await conn.request()
        await forever()

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url(), request_timeout=0.3)
        started = time.monotonic()
        out = await send(client, srv.url())
        elapsed = time.monotonic() - started
        assert (out.status, out.kind) == (None, "timeout")
        assert out.error is not None and out.error.startswith("timeout after 0.3")
        assert 0.29 <= elapsed < 1.0, elapsed
        await client.close()
        await srv.stop()

    bounded(body())


def test_timeout_after_the_status_keeps_the_status_kind() -> None:
    async def serve(conn: RawConn) -> None:
        await conn.request()
        await conn.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await forever()

    async def body() -> None:
        srv = await RawServer(serve).start()
        client = client_for(srv.url(), request_timeout=0.2)
        out = await send(client, srv.url())
        assert (out.status, out.kind) == (200, "2xx")
        assert out.error is not None and out.error.startswith("timeout after 0.2")
        await client.close()
        await srv.stop()

    bounded(body())


def test_waiting_for_a_pooled_connection_counts_in_request_timeout() -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive(before=forever)).start()  # answers nothing: both must time out
        client = client_for(srv.url(), pool_size=1, request_timeout=0.3)
        first, second = await asyncio.gather(send(client, srv.url()), send(client, srv.url()))
        assert first.kind == "timeout" and second.kind == "timeout"
        assert srv.accepted <= 2 and client.open <= 1
        await client.close()
        await srv.stop()

    bounded(body())


# -- what goes on the wire -------------------------------------------------------------------
def test_header_set_on_the_wire() -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive()).start()
        client = client_for(srv.url())
        await send(client, srv.url("/p?q=1"), {"content-type": "application/json", "x-a": "1"})
        await send(client, srv.url("/p"), {"x-a": "1"})
        await send(client, srv.url("/p"), {"x-a": "1"}, method="GET", body=None)
        await send(client, srv.url("/p"), {"x-a": "1"}, method="DELETE", body=None)
        host = f"Host: 127.0.0.1:{srv.port}"
        await client.close()
        await srv.stop()
        assert srv.requests == [
            f"POST /p?q=1 HTTP/1.1\r\n{host}\r\ncontent-type: application/json\r\nx-a: 1\r\n"
            'Content-Length: 7\r\n\r\n{"a":1}'.encode(),
            f"POST /p HTTP/1.1\r\n{host}\r\nx-a: 1\r\nContent-Length: 7\r\n"
            'Content-Type: application/octet-stream\r\n\r\n{"a":1}'.encode(),
            f"GET /p HTTP/1.1\r\n{host}\r\nx-a: 1\r\n\r\n".encode(),
            f"DELETE /p HTTP/1.1\r\n{host}\r\nx-a: 1\r\nContent-Length: 0\r\n\r\n".encode(),
        ]

    bounded(body())


def test_aiohttp_receiver_sees_the_headers_as_given() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        client = client_for(rx.url())
        headers = {"content-type": "application/json", "user-agent": "mqhook/x", "webhook-id": "msg_1"}
        out = await send(client, rx.url("/in?x=1"), headers)
        assert (out.status, out.reply) == (200, b'{"result": "ok", "message": "success"}')
        (rec,) = rx.requests
        assert (rec.method, rec.path, rec.body) == ("POST", "/in?x=1", b'{"a":1}')
        assert {k.lower(): v for k, v in rec.headers.items()} == {  # aiohttp's parser re-cases known names
            "host": f"127.0.0.1:{rx.port}",
            "content-type": "application/json",
            "user-agent": "mqhook/x",
            "webhook-id": "msg_1",
            "content-length": "7",
        }
        await client.close()
        await rx.stop()

    bounded(body())


def test_header_with_cr_lf_is_refused_not_sent() -> None:
    async def body() -> None:
        srv = await RawServer(keep_alive()).start()
        client = client_for(srv.url())
        out = await send(client, srv.url(), {"x-a": "1\r\nX-Injected: 1"})
        assert (out.kind, out.error) == ("connection_error", "ValueError: a request header contains CR, LF or NUL")
        assert srv.accepted == 0
        await client.close()
        await srv.stop()

    bounded(body())


# -- TLS -------------------------------------------------------------------------------------
def _self_signed(tmp: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl binary is not installed: cannot make a self-signed certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
    subprocess.run(
        [openssl, *args, "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def test_https_verifies_certificates_by_default(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    async def body() -> None:
        srv = await RawServer(keep_alive(), tls=server_tls).start()
        default = client_for(srv.url())
        out = await send(default, srv.url())
        assert (out.status, out.kind) == (None, "connection_error")
        assert out.error is not None and out.error.startswith(f"cannot connect to 127.0.0.1:{srv.port}: ")
        assert "CERTIFICATE_VERIFY_FAILED" in out.error and "self-signed certificate" in out.error
        await default.close()

        trusting = client_for(srv.url(), ssl_context=ssl.create_default_context(cafile=str(cert)))
        for _ in range(2):
            out = await send(trusting, srv.url())
            assert (out.status, out.reply, out.error) == (200, b'{"result": "ok"}', None)
        await trusting.close()
        await srv.stop()

    bounded(body())
