"""``/api/v1/webhooks``: list, create, read, replace, delete, enable/disable, Test, metrics, deliveries,
dead letters (list, replay, purge).

A webhook's JSON is ``WebhookConfig``, the model of a ``[[webhooks]]`` table of the config file.
Answers never carry a secret in clear (``redact``: ``secret``, secret headers, the URL's password);
a ``"******"`` sent back keeps the stored value (``unredact``), so the dashboard's GET -> edit -> PUT
round trip is safe. A change is written to the
store first and applied to the running webhooks after it committed (``WebhookManager``), both under
``AdminContext.lock``, then announced to the other workers (``AdminContext.changed``), which apply
it from the shared store. Metrics, deliveries and dead letters are this worker's own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from mqhook.admin.context import CTX, AdminContext
from mqhook.admin.http import (
    ApiError,
    Param,
    Route,
    bad_request,
    decode_body,
    json_response,
    not_found,
    query_int,
    read_json,
)
from mqhook.schema import enc_hook, encode_json
from mqhook.webhook.deadletter import as_json, parse_time
from mqhook.webhook.manager import CONFIG
from mqhook.webhook.model import WebhookConfig
from mqhook.webhook.probe import TestResult
from mqhook.webhook.redact import MASK, SECRET_HEADERS, url_password, url_with_password, url_without_password

__all__ = ["REDACTED", "ROUTES", "SECRET_HEADERS", "redact", "unredact"]

REDACTED = MASK


def redact(cfg: WebhookConfig) -> dict[str, Any]:
    """The config as JSON builtins, secrets replaced by ``REDACTED``."""
    tree: dict[str, Any] = msgspec.to_builtins(cfg, enc_hook=enc_hook)
    if tree.get("secret") is not None:
        tree["secret"] = REDACTED
    tree["headers"] = {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in tree["headers"].items()}
    tree["url"] = url_without_password(tree["url"])
    return tree


def _origin(url: object) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of a URL, None if it has none (the password is cut first: it may hold
    characters urlsplit refuses)."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url_without_password(url))
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def unredact(tree: dict[str, Any], saved: WebhookConfig | None) -> dict[str, Any]:
    """Put the saved secrets back where ``tree`` has ``REDACTED``; one without a saved value is a 400.

    The URL's password and the secret headers are sent to the receiver in clear, so they are put
    back only while the URL keeps the saved one's origin (scheme, host, port): moving a webhook to
    another server needs its credentials written again, and a stored password cannot be sent
    elsewhere by someone who never saw it. The signing ``secret`` never leaves mqhook."""
    tree = dict(tree)
    if tree.get("secret") == REDACTED:
        if saved is None or saved.secret is None:
            raise bad_request(f"secret: {REDACTED!r} stands for the saved secret, and there is none", "secret")
        tree["secret"] = saved.secret
    same_origin = saved is not None and _origin(tree.get("url", saved.url)) == _origin(saved.url)
    url = tree.get("url")
    if isinstance(url, str) and url_password(url) == REDACTED:
        stored = url_password(saved.url) if saved is not None else None
        if stored is None:
            raise bad_request(f"url: {REDACTED!r} stands for the saved URL's password, and there is none", "url")
        if not same_origin:
            raise bad_request(f"url: {REDACTED!r} keeps the saved password only on the same server; write it again",
                              "url")  # fmt: skip
        tree["url"] = url_with_password(url, stored)
    headers = tree.get("headers")
    if isinstance(headers, dict) and REDACTED in headers.values():
        old = {k.lower(): v for k, v in (saved.headers if saved is not None else {}).items()}
        fixed = {}
        for name, value in headers.items():
            if value == REDACTED:
                field = f"headers.{name}"
                if not isinstance(name, str) or name.lower() not in old:
                    raise bad_request(f"{field}: {REDACTED!r} stands for a saved value, and there is none", field)
                if not same_origin:
                    raise bad_request(
                        f"{field}: {REDACTED!r} keeps the saved value only on the same server; write it again", field
                    )
                value = old[name.lower()]
            fixed[name] = value
        tree["headers"] = fixed
    return tree


def _ctx(request: web.Request) -> AdminContext:
    return request.app[CTX]


def _item(ctx: AdminContext, name: str) -> dict[str, Any]:
    hook = ctx.webhooks.get(name)
    assert hook is not None
    source = ctx.webhooks.source(name)
    created, updated = ctx.times.get(name, (None, None))
    if not hook.config.enable:
        status = "disabled"
    elif hook.failing:
        status = "failing"
    else:
        status = "running"
    return {
        "config": redact(hook.config),
        "source": source,
        "read_only": source == CONFIG,
        "created_at": created,
        "updated_at": updated,
        "status": status,
        "metrics": ctx.metrics(name),
    }


def _existing(ctx: AdminContext, request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in ctx.webhooks:
        raise not_found("webhook", name)
    return name


def _writable(ctx: AdminContext, request: web.Request) -> str:
    name = _existing(ctx, request)
    if ctx.webhooks.source(name) == CONFIG:
        raise ApiError(
            403, "READ_ONLY", f"webhook {name!r} comes from the config file; change it there (read-only over the API)"
        )
    return name


async def _config_from(request: web.Request, name: str | None, saved: WebhookConfig | None) -> WebhookConfig:
    """The request body as a webhook config; ``name``, when given, is the path's and the body's
    ``name`` may be left out or must be the same."""
    tree = await read_json(request)
    if not isinstance(tree, dict):
        raise bad_request(f"body is a JSON {type(tree).__name__}; expected a JSON object")
    if name is not None:
        if "name" not in tree:
            tree = {**tree, "name": name}
        elif tree["name"] != name:
            raise bad_request(f"name: {tree['name']!r} is not the name in the path ({name!r})", "name")
    return decode_body(unredact(tree, saved), WebhookConfig)


# -- handlers ----------------------------------------------------------------------------------------


async def list_webhooks(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return json_response({"data": [_item(ctx, hook.name) for hook in ctx.webhooks]})


async def create_webhook(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    cfg = await _config_from(request, None, None)
    async with ctx.lock:
        if cfg.name in ctx.webhooks:
            raise ApiError(409, "ALREADY_EXISTS", f"name: a webhook named {cfg.name!r} exists", "name")
        times = await ctx.run(ctx.store.put_webhook, cfg.name, encode_json(cfg).decode(), True)
        if times is None:  # stored but not running: shadowed by the config file, or invalid (see the log)
            raise ApiError(409, "ALREADY_EXISTS", f"name: a webhook named {cfg.name!r} is stored already", "name")
        ctx.forget(cfg.name)
        ctx.times[cfg.name] = times
        ctx.webhooks.add(cfg, source="api")
    ctx.changed()
    return json_response(_item(ctx, cfg.name), 201)


async def get_webhook(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return json_response(_item(ctx, _existing(ctx, request)))


async def _replace(ctx: AdminContext, cfg: WebhookConfig) -> web.Response:
    async with ctx.lock:
        times = await ctx.run(ctx.store.put_webhook, cfg.name, encode_json(cfg).decode(), False)
        if times is None or cfg.name not in ctx.webhooks:  # deleted meanwhile
            raise not_found("webhook", cfg.name)
        ctx.times[cfg.name] = times
        ctx.webhooks.replace(cfg)
    ctx.changed()
    return json_response(_item(ctx, cfg.name))


async def replace_webhook(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name = _writable(ctx, request)
    hook = ctx.webhooks.get(name)
    assert hook is not None
    cfg = await _config_from(request, name, hook.config)
    return await _replace(ctx, cfg)


async def delete_webhook(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name = _writable(ctx, request)
    async with ctx.lock:
        await ctx.run(ctx.store.delete_webhook, name)
        if name in ctx.webhooks:
            ctx.webhooks.remove(name)
        ctx.forget(name)
    ctx.changed()
    return web.Response(status=204)


async def _set_enable(request: web.Request, enable: bool) -> web.Response:
    ctx = _ctx(request)
    name = _writable(ctx, request)
    hook = ctx.webhooks.get(name)
    assert hook is not None
    if hook.config.enable == enable:
        return json_response(_item(ctx, name))
    return await _replace(ctx, msgspec.structs.replace(hook.config, enable=enable))


async def enable_webhook(request: web.Request) -> web.Response:
    return await _set_enable(request, True)


async def disable_webhook(request: web.Request) -> web.Response:
    return await _set_enable(request, False)


async def test_webhook(request: web.Request) -> web.Response:
    """The Test button: one real request to the saved webhook, or to the config in the body."""
    ctx = _ctx(request)
    name = request.match_info["name"]
    hook = ctx.webhooks.get(name)
    if request.can_read_body and (await request.read()).strip():
        cfg = await _config_from(request, name, hook.config if hook is not None else None)
    elif hook is not None:
        cfg = hook.config
    else:
        raise not_found("webhook", name)
    result = await ctx.webhooks.test(cfg)
    return json_response(result)


async def webhook_metrics(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return json_response(ctx.metrics(_existing(ctx, request)))


async def reset_metrics(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    ctx.reset_metrics(_existing(ctx, request))
    return web.Response(status=204)


async def deliveries(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    hook = ctx.webhooks.get(_existing(ctx, request))
    assert hook is not None
    rows = [
        {
            "at": at,
            "events": events,
            "attempt": attempt,
            "outcome": outcome,
            "status": status,
            "error": error,
            "latency_ms": round(seconds * 1000, 3),
        }
        for at, events, attempt, outcome, status, error, seconds in reversed(hook.deliveries)
    ]
    return json_response({"data": rows})


def _dead_hook(request: web.Request) -> Any:
    ctx = _ctx(request)
    hook = ctx.webhooks.get(_existing(ctx, request))
    assert hook is not None
    return hook


def _time_range(request: web.Request) -> tuple[float | None, float | None]:
    out: list[float | None] = []
    for name in ("since", "until"):
        raw = request.query.get(name)
        if raw is None or raw == "":
            out.append(None)
            continue
        try:
            out.append(parse_time(raw))
        except ValueError:
            raise bad_request(f"{name}: {raw!r} is invalid; expected unix seconds or an ISO 8601 time", name) from None
    return out[0], out[1]


async def list_dead_letters(request: web.Request) -> web.Response:
    hook = _dead_hook(request)
    since, until = _time_range(request)
    limit = query_int(request, "limit", 100, 1, 10000)
    items = [] if hook.dead is None else hook.dead.select(since, until)
    return json_response({"data": [as_json(d) for d in items[:limit]], "meta": {"count": len(items)}})


async def replay_dead_letters(request: web.Request) -> web.Response:
    hook = _dead_hook(request)
    since, until = _time_range(request)
    replayed = hook.replay_dead(since, until)
    return json_response({"replayed": replayed, "left": 0 if hook.dead is None else hook.dead.count})


async def purge_dead_letters(request: web.Request) -> web.Response:
    hook = _dead_hook(request)
    since, until = _time_range(request)
    if hook.dead is None:
        return json_response({"purged": 0, "left": 0})
    purged = len(hook.dead.take(since, until))
    return json_response({"purged": purged, "left": hook.dead.count})


# -- the OpenAPI side ---------------------------------------------------------------------------------

_METRICS = {"type": "object", "description": "Counters (see docs/api.md METRICS)", "additionalProperties": True}
ITEM = {
    "type": "object",
    "required": ["config", "source", "read_only", "status", "metrics"],
    "properties": {
        "config": {"$ref": "#/components/schemas/WebhookConfig"},
        "source": {"enum": ["api", "config"]},
        "read_only": {"type": "boolean"},
        "created_at": {"type": ["number", "null"]},
        "updated_at": {"type": ["number", "null"]},
        "status": {"enum": ["running", "disabled", "failing"]},
        "metrics": _METRICS,
    },
}
_LIST = {"type": "object", "properties": {"data": {"type": "array", "items": ITEM}}}
_DELIVERIES = {
    "type": "object",
    "properties": {
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "number"},
                    "events": {"type": "integer"},
                    "attempt": {"type": "integer"},
                    "outcome": {"enum": ["2xx", "3xx", "4xx", "5xx", "other_status", "timeout", "connection_error"]},
                    "status": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"]},
                    "latency_ms": {"type": "number"},
                },
            },
        }
    },
}
_DEAD = {
    "type": "object",
    "properties": {
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "number", "description": "when it was given up, unix seconds"},
                    "reason": {"enum": ["failed", "retries_exhausted", "expired"]},
                    "clientid": {"type": "string"},
                    "event": {"type": "object", "additionalProperties": True},
                },
            },
        },
        "meta": {"type": "object", "properties": {"count": {"type": "integer"}}},
    },
}
_RANGE = (
    Param("since", {"type": "string"}, "given up at or after: unix seconds or ISO 8601"),
    Param("until", {"type": "string"}, "given up before: unix seconds or ISO 8601"),
)
_REPLAYED = {"type": "object", "properties": {"replayed": {"type": "integer"}, "left": {"type": "integer"}}}
_PURGED = {"type": "object", "properties": {"purged": {"type": "integer"}, "left": {"type": "integer"}}}
P = "/api/v1/webhooks"
T = "webhooks"
ROUTES = (
    Route("GET", P, list_webhooks, "List webhooks (config file and API) with their counters", T, reply=_LIST),
    Route("POST", P, create_webhook, "Create a webhook", T, body=WebhookConfig, ok=201, reply=ITEM,
          errors=(400, 401, 403, 409)),
    Route("GET", P + "/{name}", get_webhook, "Read a webhook", T, reply=ITEM),
    Route("PUT", P + "/{name}", replace_webhook, "Replace a webhook's settings (applied at once)", T,
          body=WebhookConfig, reply=ITEM),
    Route("DELETE", P + "/{name}", delete_webhook, "Delete a webhook", T, ok=204),
    Route("POST", P + "/{name}/enable", enable_webhook, "Enable a webhook", T, reply=ITEM),
    Route("POST", P + "/{name}/disable", disable_webhook, "Disable a webhook (it keeps its queue)", T, reply=ITEM),
    Route("POST", P + "/{name}/test", test_webhook,
          "Send one real sample request (the saved webhook, or the config in the body) and report the answer", T,
          body=WebhookConfig, body_required=False, reply=TestResult),
    Route("GET", P + "/{name}/metrics", webhook_metrics, "A webhook's counters and rates", T, reply=_METRICS),
    Route("POST", P + "/{name}/metrics/reset", reset_metrics,
          "Start the API's counters of a webhook again from zero (Prometheus keeps counting)", T, ok=204),
    Route("GET", P + "/{name}/deliveries", deliveries, "The last 100 HTTP attempts, newest first", T,
          reply=_DELIVERIES),
    Route("GET", P + "/{name}/deadletters", list_dead_letters, "The dead letters, oldest first", T,
          query=(*_RANGE, Param("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "at most (100)")),
          reply=_DEAD),
    Route("POST", P + "/{name}/deadletters/replay", replay_dead_letters,
          "Put the dead letters (of a time range) back into the webhook's queue", T, query=_RANGE, reply=_REPLAYED),
    Route("DELETE", P + "/{name}/deadletters", purge_dead_letters, "Delete the dead letters (of a time range)", T,
          query=_RANGE, reply=_PURGED),
)  # fmt: skip
