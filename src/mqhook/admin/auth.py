"""Who may use the admin API: administrators (bearer tokens from a login) and API keys (HTTP Basic).

- Logins check a salted scrypt hash (``mqhook.passwords``) in a worker thread, so the event loop
  never spends the ~40 ms of a hash. A source address with ``MAX_FAILURES`` failed logins in the
  last ``FAILURE_WINDOW`` seconds may try again once per ``RETRY_EVERY`` seconds; sooner gets 429.
- Tokens are 32 random bytes; only their SHA-256 is kept (memory and ``Store``), with the user and
  the expiry, so they survive a restart and a stolen database cannot replay them.
- API keys: the key is public, the secret is 32 random bytes, shown once; a disabled key is
  known but refused (403). Checking one is a dict lookup and a SHA-256: no disk, no thread.

Every change goes to the store first (through ``run``, the store's worker) and to memory after it
committed: an answer of 2xx means it is on disk. Then ``on_change()`` is called: with ``--workers``
it tells the other workers, which ``reload`` their tokens and keys from the shared store. Each
store write and its change in memory hold ``lock``, as does a ``reload``, so a reload never puts
back what a change just removed, nor loses what one just added.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from mqhook.admin.http import ApiError
from mqhook.admin.store import ApiKeyRow, Store, TokenRow, digest
from mqhook.passwords import hash_password, verify_password

__all__ = ["Auth", "Principal", "ensure_admin"]

MAX_FAILURES = 5
FAILURE_WINDOW = 60.0
RETRY_EVERY = 1.0
FIRST_ADMIN = "admin"

Principal = tuple[str, str]  # ("user", username) or ("api_key", key name)
Run = Callable[..., Awaitable[Any]]


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message)


def ensure_admin(store: Store, default_password: str | None, out: TextIO = sys.stderr) -> None:
    """Create ``admin`` when the data directory has no administrator: with ``default_password``,
    or a random password printed once on ``out``. Never a password shared by every install.
    Several processes starting at once on one database (``--workers``): one of them adds it, and
    only that one prints its password."""
    if store.users():
        return
    password = default_password or secrets.token_urlsafe(12)
    added = store.add_first_user(FIRST_ADMIN, hash_password(password), "created at first start")
    if added and not default_password:
        print(
            f"mqhook: created the administrator {FIRST_ADMIN!r} with the password {password!r} "
            f"(printed only this once; change it with `mqhook admin passwd --data-dir {store.dir}`)",
            file=out,
            flush=True,
        )


class Auth:
    """Checks credentials and keeps tokens and API keys; ``run(fn, *args)`` runs a store call on
    the store's worker thread."""

    def __init__(self, store: Store, run: Run, token_expiry: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.run = run
        self.token_expiry = token_expiry
        self.clock = clock
        self._tokens: dict[str, tuple[str, float]] = {h: (u, exp) for h, u, exp in store.tokens(clock())}
        self._keys: dict[str, ApiKeyRow] = {row[1]: row for row in store.api_keys()}
        self._failures: dict[str, tuple[int, float, float]] = {}  # address -> (count, first, last attempt)
        self.lock = asyncio.Lock()
        self.on_change: Callable[[], None] = _nothing

    def reload(self, tokens: list[TokenRow], keys: list[ApiKeyRow]) -> None:
        """Take the tokens and keys another process wrote (``Store.live_tokens``, ``Store.api_keys``,
        read under ``lock``, and this called before releasing it)."""
        self._tokens = {h: (u, exp) for h, u, exp in tokens}
        self._keys = {row[1]: row for row in keys}

    # -- checking a request -------------------------------------------------------------------------

    def authenticate(self, header: str | None) -> Principal:
        """The principal of an ``Authorization`` header; ApiError 401 (or 403 for a disabled key)."""
        if not header:
            raise unauthorized(
                "credentials required: Authorization: Bearer TOKEN (POST /api/v1/login) or Basic API key"
            )
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            entry = self._tokens.get(digest(value.strip()))
            if entry is None:
                raise unauthorized("unknown or ended token; log in again")
            if entry[1] <= self.clock():
                raise unauthorized("token expired; log in again")
            return ("user", entry[0])
        if scheme == "basic":
            try:
                key, sep, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise unauthorized("malformed Basic credentials; expected base64(api_key:api_secret)") from None
            row = self._keys.get(key) if sep else None
            if row is None or not hmac.compare_digest(row[2], digest(secret)):
                raise unauthorized("unknown API key or wrong secret")
            if not row[4]:
                raise ApiError(403, "FORBIDDEN", f"API key {row[0]!r} is disabled")
            return ("api_key", row[0])
        raise unauthorized(f"unsupported authorization scheme {scheme!r}; expected Bearer or Basic")

    # -- logins -------------------------------------------------------------------------------------

    async def login(self, username: str, password: str, address: str) -> tuple[str, float]:
        """A new token and its expiry; 401 for wrong credentials, 429 when the address must wait."""
        now = self.clock()
        count, first, last = self._failures.get(address, (0, now, 0.0))
        if now - first > FAILURE_WINDOW:
            count, first = 0, now
        if count >= MAX_FAILURES and now - last < RETRY_EVERY:
            raise ApiError(429, "TOO_MANY_REQUESTS", f"{count} failed logins from {address}; try again in a second")
        row = await self.run(self.store.user, username)
        # A wrong name costs as much as a wrong password: the hash is computed either way.
        stored = row[1] if row is not None else _dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, stored)
        if not ok or row is None:
            self._failures[address] = (count + 1, first, self.clock())
            raise unauthorized("wrong username or password")
        self._failures.pop(address, None)
        token = secrets.token_urlsafe(32)
        expires = self.clock() + self.token_expiry
        hashed = digest(token)
        async with self.lock:
            await self.run(self.store.add_token, hashed, username, expires)
            self._tokens[hashed] = (username, expires)
        self._expire_tokens()
        self.on_change()
        return token, expires

    async def logout(self, header: str | None) -> None:
        _, _, value = (header or "").partition(" ")
        hashed = digest(value.strip())
        async with self.lock:
            await self.run(self.store.delete_token, hashed)
            self._tokens.pop(hashed, None)
        self.on_change()

    def _expire_tokens(self) -> None:
        now = self.clock()
        for hashed in [h for h, (_, exp) in self._tokens.items() if exp <= now]:
            del self._tokens[hashed]

    # -- users ----------------------------------------------------------------------------------------

    async def add_user(self, username: str, password: str, description: str) -> bool:
        hashed = await asyncio.to_thread(hash_password, password)
        return bool(await self.run(self.store.add_user, username, hashed, description))  # users are not cached

    async def change_password(self, username: str, old: str, new: str) -> None:
        row = await self.run(self.store.user, username)
        if row is None:
            raise ApiError(404, "NOT_FOUND", f"user {username!r} not found")
        if not await asyncio.to_thread(verify_password, old, row[1]):
            raise ApiError(400, "BAD_REQUEST", "old_pwd: wrong password", "old_pwd")
        hashed = await asyncio.to_thread(hash_password, new)
        async with self.lock:
            await self.run(self.store.set_password, username, hashed)
            self._drop_tokens_of(username)
        self.on_change()

    async def delete_user(self, username: str) -> str:
        async with self.lock:
            outcome: str = await self.run(self.store.delete_user, username)
            if outcome == "deleted":
                self._drop_tokens_of(username)
        if outcome == "deleted":
            self.on_change()
        return outcome

    def _drop_tokens_of(self, username: str) -> None:
        for hashed in [h for h, (u, _) in self._tokens.items() if u == username]:
            del self._tokens[hashed]

    # -- API keys ------------------------------------------------------------------------------------

    def api_keys(self) -> list[ApiKeyRow]:
        return sorted(self._keys.values(), key=lambda row: row[5])

    def api_key(self, name: str) -> ApiKeyRow | None:
        return next((row for row in self._keys.values() if row[0] == name), None)

    async def add_api_key(self, name: str, description: str, enable: bool) -> tuple[ApiKeyRow, str] | None:
        """(the stored row, the secret), or None if the name is taken."""
        key, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        row: ApiKeyRow = (name, key, digest(secret), description, enable, self.clock())
        async with self.lock:
            if not await self.run(self.store.add_api_key, row):
                return None
            self._keys[key] = row
        self.on_change()
        return row, secret

    async def update_api_key(self, name: str, description: str | None, enable: bool | None) -> ApiKeyRow | None:
        row = self.api_key(name)
        if row is None:
            return None
        new: ApiKeyRow = (
            row[0],
            row[1],
            row[2],
            row[3] if description is None else description,
            row[4] if enable is None else enable,
            row[5],
        )
        async with self.lock:
            await self.run(self.store.update_api_key, name, new[3], new[4])
            self._keys[row[1]] = new
        self.on_change()
        return new

    async def delete_api_key(self, name: str) -> bool:
        row = self.api_key(name)
        if row is None:
            return False
        async with self.lock:
            await self.run(self.store.delete_api_key, name)
            self._keys.pop(row[1], None)
        self.on_change()
        return True


def _nothing() -> None:
    pass


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches, checked for unknown user names."""
    return hash_password(secrets.token_urlsafe(16))
