"""The admin HTTP server (aiohttp.web): health and broker statistics for now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker
    from mqhook.webhook.webhook import WebhookManager

BROKER_KEY = web.AppKey("broker", object)
WEBHOOKS_KEY = web.AppKey("webhooks", object)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]  # type: ignore[assignment]
    webhooks: WebhookManager = request.app[WEBHOOKS_KEY]  # type: ignore[assignment]
    body: dict[str, Any] = dict(broker.gauges())
    body.update(broker.stats.snapshot())
    body["webhooks"] = webhooks.stats()
    return web.json_response(body)


def make_app(broker: Broker, webhooks: WebhookManager) -> web.Application:
    app = web.Application()
    app[BROKER_KEY] = broker
    app[WEBHOOKS_KEY] = webhooks
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/stats", stats)
    return app
