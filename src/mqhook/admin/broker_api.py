"""The broker's routes: overview, stats, clients (list, read, kick), subscriptions, the event catalogue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from mqhook import __version__
from mqhook.admin.context import CTX, AdminContext
from mqhook.admin.http import Param, Route, json_response, not_found, query_int
from mqhook.events.catalogue import EVENTS, MessageEvent
from mqhook.native import IMPLEMENTATIONS

if TYPE_CHECKING:
    from mqhook.broker.session import Session

__all__ = ["ROUTES"]

MAX_LIMIT = 1000


def _ctx(request: web.Request) -> AdminContext:
    return request.app[CTX]


def _page(request: web.Request) -> tuple[int, int]:
    return query_int(request, "page", 1, 1, 1 << 31), query_int(request, "limit", 100, 1, MAX_LIMIT)


def _paged(rows: list[Any], page: int, limit: int) -> dict[str, Any]:
    start = (page - 1) * limit
    return {"data": rows[start : start + limit], "meta": {"page": page, "limit": limit, "count": len(rows)}}


def _client(session: Session) -> dict[str, Any]:
    conn = session.conn
    username, _, peername = session.client_info
    return {
        "clientid": session.client_id,
        "username": conn.username if conn is not None else username,
        "connected": conn is not None,
        "peername": conn.peername if conn is not None else peername,
        "sockname": conn.sockname if conn is not None else None,
        "proto_name": conn.proto_name if conn is not None else None,
        "proto_ver": conn.level if conn is not None else None,
        "keepalive": conn.keepalive if conn is not None else None,
        "clean_start": conn.clean_start if conn is not None else None,
        "expiry_interval": session.expiry_interval,
        "connected_at": conn.connected_at if conn is not None else None,
        "subscriptions_cnt": len(session.subscriptions),
        "inflight_cnt": len(session.inflight),
        "mqueue_len": len(session.queue) if session.queue is not None else 0,
    }


# -- handlers -------------------------------------------------------------------------------------------


async def stats(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    body: dict[str, Any] = dict(ctx.broker.gauges())
    body.update(ctx.broker.stats.snapshot())
    body["webhooks"] = ctx.webhooks.stats()
    body["build"] = {"version": __version__, **IMPLEMENTATIONS}
    body["node"] = ctx.node
    # [cluster]: node, nats_url (password hidden), connected, and the counters of the bridge and its parts.
    body["cluster"] = ctx.cluster_stats() if ctx.cluster_stats is not None else None
    return json_response(body)


async def overview(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    gauges = ctx.broker.gauges()
    hooks = list(ctx.webhooks)
    totals = {"matched": 0, "success": 0, "failed": 0, "dropped": 0}
    for hook in hooks:
        totals["matched"] += hook.matched
        totals["success"] += hook.success
        totals["failed"] += hook.failed
        totals["dropped"] += sum(hook.dropped.values())
    return json_response(
        {
            "node": ctx.node,
            "version": __version__,
            "uptime_s": round(request.loop.time() - ctx.started_loop_time, 3),
            "connections": gauges["connections"],
            "sessions": gauges["sessions"],
            "subscriptions": gauges["subscriptions"],
            "retained": gauges["retained"],
            "messages_in_rate": ctx.rates.rate("in"),
            "messages_out_rate": ctx.rates.rate("out"),
            "webhooks": {
                "total": len(hooks),
                "enabled": sum(1 for h in hooks if h.config.enable),
                "failing": sum(1 for h in hooks if h.config.enable and h.failing),
                **totals,
            },
        }
    )


async def list_clients(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    page, limit = _page(request)
    prefix = request.query.get("clientid_prefix", "")
    ids = sorted(cid for cid in ctx.broker.sessions if cid.startswith(prefix))
    start = (page - 1) * limit
    rows = [_client(ctx.broker.sessions[cid]) for cid in ids[start : start + limit]]
    return json_response({"data": rows, "meta": {"page": page, "limit": limit, "count": len(ids)}})


async def get_client(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    clientid = request.match_info["clientid"]
    session = ctx.broker.sessions.get(clientid)
    if session is None:
        raise not_found("client", clientid)
    return json_response(_client(session))


async def kick_client(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    clientid = request.match_info["clientid"]
    if not ctx.broker.kick(clientid):
        raise not_found("client", clientid)
    return web.Response(status=204)


async def list_subscriptions(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    page, limit = _page(request)
    want_client = request.query.get("clientid")
    want_topic = request.query.get("topic")
    rows = []
    for cid in sorted(ctx.broker.sessions):
        if want_client is not None and cid != want_client:
            continue
        for full, opts in ctx.broker.sessions[cid].subscriptions.items():
            if want_topic is not None and full != want_topic:
                continue
            rows.append(
                {
                    "clientid": cid,
                    "topic": full,
                    "qos": opts.qos,
                    "nl": int(opts.no_local),
                    "rap": int(opts.rap),
                    "rh": opts.retain_handling,
                }
            )
    return json_response(_paged(rows, page, limit))


def _event_row(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": "message" if isinstance(row, MessageEvent) else "client",
        "fields": [f.encode_name for f in msgspec.structs.fields(row.struct)],
    }


EVENT_CATALOGUE = [_event_row(row) for row in EVENTS]


async def list_events(request: web.Request) -> web.Response:
    return json_response({"data": EVENT_CATALOGUE})


# -- the OpenAPI side ---------------------------------------------------------------------------------

_OBJ = {"type": "object", "additionalProperties": True}
_PAGING = (
    Param("page", {"type": "integer", "minimum": 1, "default": 1}, "page number, from 1"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}, "rows per page"),
)
_CLIENT = {
    "type": "object",
    "properties": {
        name: {"type": kind}
        for name, kind in (
            ("clientid", "string"),
            ("username", ["string", "null"]),
            ("connected", "boolean"),
            ("peername", ["string", "null"]),
            ("sockname", ["string", "null"]),
            ("proto_name", ["string", "null"]),
            ("proto_ver", ["integer", "null"]),
            ("keepalive", ["integer", "null"]),
            ("clean_start", ["boolean", "null"]),
            ("expiry_interval", "integer"),
            ("connected_at", ["integer", "null"]),
            ("subscriptions_cnt", "integer"),
            ("inflight_cnt", "integer"),
            ("mqueue_len", "integer"),
        )
    },
}
_META = {"type": "object", "properties": {"page": {"type": "integer"}, "limit": {"type": "integer"},
                                          "count": {"type": "integer"}}}  # fmt: skip
ROUTES = (
    Route("GET", "/api/v1/overview", overview, "Totals and rates for the dashboard's overview", "broker", reply=_OBJ),
    Route("GET", "/api/v1/stats", stats, "The broker's gauges and counters and every webhook's counters", "broker",
          reply=_OBJ),
    Route("GET", "/api/v1/clients", list_clients, "Clients (sessions, connected or not), by client id", "clients",
          query=(*_PAGING, Param("clientid_prefix", {"type": "string"}, "only client ids starting with this")),
          reply={"type": "object", "properties": {"data": {"type": "array", "items": _CLIENT}, "meta": _META}}),
    Route("GET", "/api/v1/clients/{clientid}", get_client, "One client", "clients", reply=_CLIENT),
    Route("DELETE", "/api/v1/clients/{clientid}", kick_client,
          "Kick a client (v5 DISCONNECT 0x98; client.disconnected reason 'kicked') and end its session", "clients",
          ok=204),
    Route("GET", "/api/v1/subscriptions", list_subscriptions, "Subscriptions of every session", "clients",
          query=(*_PAGING, Param("clientid", {"type": "string"}), Param("topic", {"type": "string"},
                                                                          "the filter as subscribed")),
          reply={"type": "object", "properties": {"data": {"type": "array", "items": _OBJ}, "meta": _META}}),
    Route("GET", "/api/v1/events", list_events, "The event catalogue: each EMQX event and its fields", "broker",
          reply={"type": "object", "properties": {"data": {"type": "array", "items": _OBJ}}}),
)  # fmt: skip
