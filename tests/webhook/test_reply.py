"""How much of a reply ``send_once`` keeps: all of a short one, the first REPLY_LIMIT bytes of a long one."""

from __future__ import annotations

import pytest
from aiohttp import web

from mqhook.webhook.http import HttpClient
from mqhook.webhook.request import REPLY_LIMIT, Request, send_once

from .kit import Handler, Received, Receiver, run
from .rawhttp import Wire


def _streamed(parts: list[bytes], status: int, wire: Wire) -> Handler:
    async def handler(rec: Received, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=status)
        await resp.prepare(request)
        for part in parts:
            read, lost = wire.received, wire.lost
            await resp.write(part)
            # the client read it (or closed, having kept enough) before the next part: it reads more than once
            await wire.until(lambda: wire.received > read or wire.lost > lost)  # noqa: B023
        await resp.write_eof()
        return resp

    return handler


def _send(parts: list[bytes], status: int, wire: Wire) -> tuple[int | None, str, bytes]:
    async def body() -> tuple[int | None, str, bytes]:
        rx = await Receiver(_streamed(parts, status, wire)).start()
        try:
            client = HttpClient(rx.url(), reply_limit=REPLY_LIMIT)
            try:
                req = Request("POST", rx.url(), {}, b"{}", 1)
                out = await send_once(client, req, {"content-type": "application/json"})
                return out.status, out.kind, out.reply
            finally:
                await client.close()
        finally:
            await rx.stop()

    return run(body())


def test_short_reply_in_several_chunks_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [b"first,", b"second,", b"third"]
    wire = Wire(monkeypatch)
    assert _send(parts, 503, wire) == (503, "5xx", b"first,second,third")
    assert len(wire.reads) >= 3


def test_long_reply_is_cut_at_reply_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [bytes([65 + i]) * 30000 for i in range(4)]  # 120000 bytes
    status, kind, reply = _send(parts, 400, Wire(monkeypatch))
    assert (status, kind) == (400, "4xx")
    assert reply == b"".join(parts)[:REPLY_LIMIT]


def test_empty_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _send([], 204, Wire(monkeypatch)) == (204, "2xx", b"")
