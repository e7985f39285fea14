"""The admin server's router and its OpenAPI document agree: every route it serves is documented
(the dashboard's static files aside), with the same method, and each needs credentials exactly
when the document says so. (tests/admin checks the other way: every documented route answers.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from mqhook.admin.server import STATIC
from mqhook.app import App
from mqhook.config import load


async def _routes_and_spec(data_dir: str) -> tuple[set[tuple[str, str]], dict[str, Any], dict[tuple[str, str], int]]:
    admin = {"bind": "127.0.0.1:0", "default_password": "routes-test"}
    cfg = load(environ={}, overrides={"mqtt": {"bind": "127.0.0.1:0"}, "admin": admin, "data_dir": data_dir})
    app = App(cfg)
    await app.start()
    try:
        assert app.admin_runner is not None
        served = set()
        for route in app.admin_runner.app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            path = info.get("path") or info.get("formatter")
            if route.method != "HEAD":
                served.add((route.method, path))
        unauthenticated: dict[tuple[str, str], int] = {}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{app.admin_address}/api/v1/openapi.json") as resp:
                spec = await resp.json()
            for method, path in served:
                if "{path" in path:
                    continue
                url = f"http://{app.admin_address}{path.replace('{', 'x').replace('}', '')}"
                async with http.request(method, url, json={}) as resp:
                    unauthenticated[(method, path)] = resp.status
        return served, spec, unauthenticated
    finally:
        await app.stop()


def test_every_served_route_is_in_the_openapi_document_with_its_security(tmp_path: Path) -> None:
    served, spec, status = asyncio.run(_routes_and_spec(str(tmp_path)))
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    dashboard = {("GET", "/"), *((m, p) for m, p in served if "{path" in p)}
    assert STATIC.is_dir() and dashboard  # the dashboard is served
    assert served - dashboard == documented, "routes served but not documented, or documented but not served"
    assert len(documented) >= 30
    for (method, path), code in status.items():
        if (method, path) in dashboard:
            continue
        op = spec["paths"][path][method.lower()]
        is_open = op.get("security") == []
        # Without credentials: an open route answers (200, or 400 for the login's empty body);
        # every other route is refused before it looks at anything.
        assert (code != 401) if is_open else (code == 401), (method, path, code)
