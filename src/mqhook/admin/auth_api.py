"""Routes of who may use the API: login and logout, API keys, administrators."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from mqhook.admin.auth import FIRST_ADMIN
from mqhook.admin.context import CTX, AdminContext
from mqhook.admin.http import ApiError, Route, decode_body, json_response, not_found, read_json
from mqhook.admin.store import ApiKeyRow

__all__ = ["ROUTES"]

NAME_RE = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z_.@]*$")
Name = Annotated[str, Meta(min_length=1, max_length=128, pattern=NAME_RE.pattern)]
Password = Annotated[str, Meta(min_length=8, max_length=1024)]


class Login(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, Meta(max_length=128)]
    password: Annotated[str, Meta(max_length=1024)]


class LoginReply(msgspec.Struct):
    token: str
    expires_at: float
    username: str


class NewApiKey(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    description: Annotated[str, Meta(max_length=1024)] = ""
    enable: bool = True


class ApiKeyChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    description: Annotated[str, Meta(max_length=1024)] | None = None
    enable: bool | None = None


class ApiKey(msgspec.Struct, kw_only=True):
    name: str
    api_key: str
    description: str
    enable: bool
    created_at: float
    api_secret: str | None = msgspec.field(default=None)  # only in the answer that created it


class NewUser(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    username: Name
    password: Password
    description: Annotated[str, Meta(max_length=1024)] = ""


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    old_pwd: Annotated[str, Meta(max_length=1024)]
    new_pwd: Password


class User(msgspec.Struct):
    username: str
    description: str
    created_at: float


def _ctx(request: web.Request) -> AdminContext:
    return request.app[CTX]


def _key(row: ApiKeyRow, secret: str | None = None) -> dict[str, Any]:
    name, key, _, description, enable, created = row
    out: dict[str, Any] = {
        "name": name,
        "api_key": key,
        "description": description,
        "enable": enable,
        "created_at": created,
    }
    if secret is not None:
        out["api_secret"] = secret
    return out


# -- login ----------------------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    body = decode_body(await read_json(request), Login)
    token, expires = await ctx.auth.login(body.username, body.password, request.remote or "unknown")
    return json_response(LoginReply(token, expires, body.username))


async def logout(request: web.Request) -> web.Response:
    await _ctx(request).auth.logout(request.headers.get("Authorization"))
    return web.Response(status=204)


# -- API keys ---------------------------------------------------------------------------------------------


async def list_api_keys(request: web.Request) -> web.Response:
    return json_response({"data": [_key(row) for row in _ctx(request).auth.api_keys()]})


async def create_api_key(request: web.Request) -> web.Response:
    body = decode_body(await read_json(request), NewApiKey)
    made = await _ctx(request).auth.add_api_key(body.name, body.description, body.enable)
    if made is None:
        raise ApiError(409, "ALREADY_EXISTS", f"name: an API key named {body.name!r} exists", "name")
    return json_response(_key(*made), 201)


def _api_key(request: web.Request) -> ApiKeyRow:
    name = request.match_info["name"]
    row = _ctx(request).auth.api_key(name)
    if row is None:
        raise not_found("API key", name)
    return row


async def get_api_key(request: web.Request) -> web.Response:
    return json_response(_key(_api_key(request)))


async def update_api_key(request: web.Request) -> web.Response:
    row = _api_key(request)
    body = decode_body(await read_json(request), ApiKeyChange)
    new = await _ctx(request).auth.update_api_key(row[0], body.description, body.enable)
    if new is None:
        raise not_found("API key", row[0])
    return json_response(_key(new))


async def delete_api_key(request: web.Request) -> web.Response:
    row = _api_key(request)
    await _ctx(request).auth.delete_api_key(row[0])
    return web.Response(status=204)


# -- administrators ------------------------------------------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    rows = await ctx.run(ctx.store.users)
    return json_response({"data": [User(name, desc, created) for name, _, desc, created in rows]})


async def create_user(request: web.Request) -> web.Response:
    body = decode_body(await read_json(request), NewUser)
    if not await _ctx(request).auth.add_user(body.username, body.password, body.description):
        raise ApiError(409, "ALREADY_EXISTS", f"username: a user named {body.username!r} exists", "username")
    ctx = _ctx(request)
    row = await ctx.run(ctx.store.user, body.username)
    return json_response(User(row[0], row[2], row[3]), 201)


async def delete_user(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    outcome = await _ctx(request).auth.delete_user(username)
    if outcome == "missing":
        raise not_found("user", username)
    if outcome == "last":
        raise ApiError(409, "CONFLICT", f"{username!r} is the last administrator; add another first")
    return web.Response(status=204)


async def change_password(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    body = decode_body(await read_json(request), PasswordChange)
    await _ctx(request).auth.change_password(username, body.old_pwd, body.new_pwd)
    return web.Response(status=204)


# -- the OpenAPI side -------------------------------------------------------------------------------------------

_KEYS = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/ApiKey"}}}}
_USERS = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}}}
ROUTES = (
    Route("POST", "/api/v1/login", login, f"Log in (the first administrator is {FIRST_ADMIN!r}): a bearer token",
          "auth", auth=False, body=Login, reply=LoginReply, errors=(400, 401, 429)),
    Route("POST", "/api/v1/logout", logout, "End the bearer token used", "auth", ok=204),
    Route("GET", "/api/v1/api_keys", list_api_keys, "API keys (never their secrets)", "auth", reply=_KEYS),
    Route("POST", "/api/v1/api_keys", create_api_key,
          "Create an API key: the secret is in this answer only; use HTTP Basic api_key:api_secret", "auth",
          body=NewApiKey, ok=201, reply=ApiKey, errors=(400, 401, 403, 409)),
    Route("GET", "/api/v1/api_keys/{name}", get_api_key, "One API key", "auth", reply=ApiKey),
    Route("PUT", "/api/v1/api_keys/{name}", update_api_key, "Enable, disable or describe an API key", "auth",
          body=ApiKeyChange, reply=ApiKey),
    Route("DELETE", "/api/v1/api_keys/{name}", delete_api_key, "Delete an API key", "auth", ok=204),
    Route("GET", "/api/v1/users", list_users, "Administrators", "auth", reply=_USERS),
    Route("POST", "/api/v1/users", create_user, "Add an administrator", "auth", body=NewUser, ok=201, reply=User,
          errors=(400, 401, 403, 409)),
    Route("DELETE", "/api/v1/users/{username}", delete_user, "Remove an administrator (not the last)", "auth",
          ok=204, errors=(401, 403, 404, 409)),
    Route("POST", "/api/v1/users/{username}/change_pwd", change_password,
          "Change a password (ends that user's tokens)", "auth", body=PasswordChange, ok=204),
)  # fmt: skip
