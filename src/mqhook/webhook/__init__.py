"""Webhook delivery: the config model, templates, the queue, requests, the HTTP client, the Test.

Modules, bottom up: ``redact`` / ``template`` / ``variables`` < ``model`` < ``encode`` / ``signing`` /
``queue`` / ``counters`` / ``http`` < ``request`` < ``probe`` / ``webhook`` < ``manager``. ``redact``
says how secrets are hidden (the one ``url_without_password``); ``variables`` which template
variables the events have. ``http`` is the delivery HTTP/1.1
client (a keep-alive pool on ``asyncio.Protocol``); aiohttp only serves (admin API, receivers).
"""

from __future__ import annotations

from mqhook.webhook.manager import WebhookManager
from mqhook.webhook.model import WebhookConfig, parse_duration, parse_size, parse_webhook, webhook_from_flag
from mqhook.webhook.probe import TestResult
from mqhook.webhook.webhook import Webhook

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
