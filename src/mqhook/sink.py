"""``mqhook sink``: a tiny webhook receiver that prints every request it gets.

It plays the part of the Flask receiver on EMQX's Webhook page: any method, any path, answers
``200 {"result": "ok", "message": "success"}``. Each request is printed on one line: method,
path (with query), then the body, as compact JSON when it parses (a batch shows as an array),
otherwise as text with invalid UTF-8 replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from aiohttp import web

REPLY = {"result": "ok", "message": "success"}


def format_request(method: str, path: str, body: bytes) -> str:
    """One readable line for one request."""
    if not body:
        return f"{method} {path}"
    try:
        text = json.dumps(json.loads(body), ensure_ascii=False, separators=(", ", ": "))
    except ValueError:
        text = body.decode("utf-8", "replace")
    return f"{method} {path} {text}"


def make_app(printer: Callable[[str], None] = print) -> web.Application:
    """The receiver: ``printer`` gets one line per request."""

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        printer(format_request(request.method, request.path_qs, body))
        return web.json_response(REPLY)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receive)
    return app


def main(argv: list[str] | None = None) -> int:
    """``mqhook sink [--port 5000] [--host 127.0.0.1]``; runs until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="mqhook sink", description="print every webhook request received")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    args = parser.parse_args(argv)

    def printer(line: str) -> None:
        print(line, flush=True)

    print(f"mqhook sink listening on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    try:
        web.run_app(make_app(printer), host=args.host, port=args.port, print=None, access_log=None)
    except OSError as exc:
        print(f"mqhook sink: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
