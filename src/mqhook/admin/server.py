"""The admin HTTP server (aiohttp.web): the REST API (docs/api.md), its OpenAPI document,
``/healthz``, Prometheus ``/metrics`` and the dashboard's static files.

Every API route is one ``Route`` of the tables in ``auth_api``, ``webhooks`` and ``broker_api``;
the router and the OpenAPI document are both built from them. A route with ``auth`` is wrapped
by a credentials check (``auth.Auth``); errors of every route are JSON ``{"code", "message",
"field"}``, unknown ``/api`` paths included.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from mqhook.admin import auth_api, broker_api, webhooks
from mqhook.admin.context import CTX, AdminContext
from mqhook.admin.http import ApiError, Route, json_response
from mqhook.admin.openapi import build

__all__ = ["ROUTES", "make_app"]

log = logging.getLogger("mqhook.admin")

STATIC = Path(__file__).resolve().parent / "static"
ROUTES: tuple[Route, ...] = (*auth_api.ROUTES, *webhooks.ROUTES, *broker_api.ROUTES)
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
OPENAPI_KEY = web.AppKey("openapi", dict)
PRINCIPAL = web.RequestKey("principal", tuple)  # who made the request: ("user", name) or ("api_key", name)
# The dashboard loads nothing from elsewhere and is never framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authed(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def check(request: web.Request) -> web.StreamResponse:
        request[PRINCIPAL] = request.app[CTX].auth.authenticate(request.headers.get("Authorization"))
        return await handler(request)

    return check


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if not request.path.startswith("/api/"):
            raise
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BAD_REQUEST"}.get(exc.status, "ERROR")
        resp = ApiError(exc.status, code, f"{request.method} {request.path}: {exc.reason}").response()
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception as exc:  # a bug: logged with its traceback, answered in the API's shape
        log.exception("admin API: %s %s failed", request.method, request.path)
        return ApiError(500, "INTERNAL_ERROR", f"internal error: {exc!r}").response()


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the registry (``mqhook.metrics``), read from counters now.

    Served as text format 0.0.4, which every Prometheus 2.x parses: all names are classic ones,
    so the body is the same as prometheus_client's newer 1.0.0 (UTF-8 names) would be."""
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])


async def page(request: web.Request) -> web.StreamResponse:
    """A file of the dashboard; ``/`` is its index.html."""
    name = request.match_info.get("path") or "index.html"
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file():
        raise web.HTTPNotFound()
    resp = web.FileResponse(path, headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})
    return resp


def make_app(ctx: AdminContext, registry: CollectorRegistry | None = None, dashboard: bool = True) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=2 * 1024 * 1024)
    app[CTX] = ctx
    plain = [("/healthz", "Liveness: always ok while the server runs", False),
             ("/api/v1/openapi.json", "This document", False)]  # fmt: skip
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/openapi.json", openapi)
    if registry is not None:
        app[REGISTRY_KEY] = registry
        app.router.add_get("/metrics", _authed(metrics) if ctx.metrics_auth else metrics)
        plain.append(("/metrics", "Prometheus metrics (text format 0.0.4)", ctx.metrics_auth))
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _authed(route.handler) if route.auth else route.handler)
    app[OPENAPI_KEY] = build(ROUTES, plain)
    if dashboard and STATIC.is_dir():
        app.router.add_get("/", page)
        app.router.add_get("/{path:(?!api/).+}", page)
    return app
