"""Webhook delivery: config model, templates, encoding, signing, queue, dispatcher, Test, sink.

Modules, bottom up: ``template`` < ``model`` < ``encode``/``signing``/``queue``/``counters``/``http_conn`` < ``http``
< ``request`` < ``dispatcher`` < ``probe`` < ``webhook``; ``sink_server`` stands alone. ``http`` is
the delivery HTTP/1.1 client (keep-alive pool on ``asyncio.Protocol``); aiohttp serves only.
"""

from __future__ import annotations

from mqhook.webhook.model import WebhookConfig, parse_duration, parse_size, parse_webhook, webhook_from_flag
from mqhook.webhook.probe import TestResult
from mqhook.webhook.webhook import Webhook, WebhookManager

__all__ = [
    "TestResult",
    "Webhook",
    "WebhookConfig",
    "WebhookManager",
    "parse_duration",
    "parse_size",
    "parse_webhook",
    "webhook_from_flag",
]
