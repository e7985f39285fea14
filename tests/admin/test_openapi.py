"""GET /api/v1/openapi.json describes the API (docs/api.md, first section): a valid OpenAPI 3.x
document whose every operation answers. (That every route is documented is the backend's own test.)"""

from __future__ import annotations

from typing import Any

from conftest import Broker

from .helpers import bearer, documented_routes, fill, fresh_token, hook, openapi

# The routes docs/api.md documents; each must be in the OpenAPI document.
DOCUMENTED = {
    ("POST", "/api/v1/login"),
    ("POST", "/api/v1/logout"),
    ("GET", "/api/v1/api_keys"),
    ("POST", "/api/v1/api_keys"),
    ("GET", "/api/v1/api_keys/{name}"),
    ("PUT", "/api/v1/api_keys/{name}"),
    ("DELETE", "/api/v1/api_keys/{name}"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("DELETE", "/api/v1/users/{username}"),
    ("POST", "/api/v1/users/{username}/change_pwd"),
    ("GET", "/api/v1/webhooks"),
    ("POST", "/api/v1/webhooks"),
    ("GET", "/api/v1/webhooks/{name}"),
    ("PUT", "/api/v1/webhooks/{name}"),
    ("DELETE", "/api/v1/webhooks/{name}"),
    ("POST", "/api/v1/webhooks/{name}/enable"),
    ("POST", "/api/v1/webhooks/{name}/disable"),
    ("POST", "/api/v1/webhooks/{name}/test"),
    ("GET", "/api/v1/webhooks/{name}/metrics"),
    ("POST", "/api/v1/webhooks/{name}/metrics/reset"),
    ("GET", "/api/v1/webhooks/{name}/deliveries"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/clients"),
    ("GET", "/api/v1/clients/{clientid}"),
    ("DELETE", "/api/v1/clients/{clientid}"),
    ("GET", "/api/v1/subscriptions"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/overview"),
    ("GET", "/api/v1/openapi.json"),
}


def test_openapi_is_valid_3x(default_broker: Broker) -> None:
    doc = openapi(default_broker)
    assert isinstance(doc.get("openapi"), str) and doc["openapi"].startswith("3."), doc.get("openapi")
    assert isinstance(doc.get("info"), dict) and doc["info"].get("title") and doc["info"].get("version"), doc.get(
        "info"
    )
    assert isinstance(doc.get("paths"), dict) and doc["paths"], "no paths"
    for path, ops in doc["paths"].items():
        assert path.startswith("/"), path
        for method, op in ops.items():
            if method in ("parameters", "summary", "description", "servers", "$ref"):
                continue
            assert method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"), (path, method)
            assert isinstance(op.get("responses"), dict) and op["responses"], f"{method} {path}: no responses"
            for seg in path.split("/"):
                if seg.startswith("{"):
                    params = [*ops.get("parameters", []), *op.get("parameters", [])]
                    declared = {p.get("name") for p in params if p.get("in") == "path"}
                    assert seg[1:-1] in declared, f"{method} {path}: path parameter {seg} not declared"


def test_openapi_documents_the_routes_of_the_doc(default_broker: Broker) -> None:
    routes = set(documented_routes(openapi(default_broker)))
    missing = sorted(DOCUMENTED - routes)
    assert not missing, f"routes of docs/api.md missing from openapi.json: {missing}"


def test_every_documented_operation_answers(default_broker: Broker, nid: str, mqtt_clients: Any) -> None:
    b = default_broker
    routes = documented_routes(openapi(b))
    # objects to fill the path parameters with; DELETEs run last, logout at the very end
    wh = f"{nid}-wh"
    assert b.api("POST", "/api/v1/webhooks", hook(wh, "http://127.0.0.1:9/", nid))[0] == 201
    status, key = b.api("POST", "/api/v1/api_keys", {"name": f"{nid}-key"})
    assert status == 201, key
    user = f"{nid}-user"
    assert b.api("POST", "/api/v1/users", {"username": user, "password": "pw-" + nid, "description": ""})[0] == 201
    client = mqtt_clients(b, f"{nid}-client")
    values = {
        "webhooks.name": wh,
        "api_keys.name": f"{nid}-key",
        "users.username": user,
        "clients.clientid": client.client_id,
    }
    token = fresh_token(b)

    def order(route: tuple[str, str]) -> tuple[int, int, str, str]:
        method, path = route
        # a DELETE of a sub-resource (a webhook's dead letters) before the DELETE of its parent
        deeper_first = -path.count("/") if method == "DELETE" else 0
        return (2 if path.endswith("/logout") else 1 if method == "DELETE" else 0, deeper_first, path, method)

    bad = []
    for method, template in sorted(routes, key=order):
        path = fill(template, values)
        body: bytes | None = None
        if method in ("POST", "PUT") and not path.endswith(("/test", "/enable", "/disable", "/reset", "/logout")):
            body = b"{}"
        status, out, _ = b.request(method, path, body, auth=bearer(token))
        if status in (404, 405) or status >= 500:
            bad.append(f"{method} {path} -> {status} {out[:300]!r}")
    assert not bad, "documented operations that do not answer:\n" + "\n".join(bad)


# The other way round (every served route is documented) is tests/integration/test_admin_routes.py.
