"""The admin HTTP server (aiohttp.web): health and broker statistics for now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker

BROKER_KEY = web.AppKey("broker", object)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]  # type: ignore[assignment]
    body = broker.gauges()
    body.update(broker.stats.snapshot())
    return web.json_response(body)


def make_app(broker: Broker) -> web.Application:
    app = web.Application()
    app[BROKER_KEY] = broker
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/stats", stats)
    return app
