"""The data directory's database: administrators, API keys, login tokens, webhooks made over the API.

SQLite (the standard library's ``sqlite3``) in WAL mode with ``synchronous = FULL``: a write is
on disk when its transaction commits, so a SIGKILL (or a power cut) after an API answer of 2xx
loses nothing; a write cut short by a crash is rolled back at the next open. One file,
``mqhook.db``, readable by its owner only.

What is stored, and how:

- ``users``: name and a salted scrypt hash of the password (``mqhook.passwords``), never the password;
- ``api_keys``: the key (public) and a SHA-256 of the secret: secrets are 32 random bytes, so
  a fast hash is as safe as a slow one and keeps every Basic-authenticated request cheap;
- ``tokens``: SHA-256 of each bearer token with its user and expiry (tokens survive a restart);
- ``webhooks``: each API-made webhook's config as the JSON of ``WebhookConfig`` (secrets included:
  they are needed to sign; the file's mode is 0600);
- ``meta``: the schema version and ``store_id``, a random id made when the database is created
  (the workers of ``mqhook run --workers N`` share one database, and announce their changes to
  each other with it: a node whose database has another id ignores them).

Several processes may use one database at once (the workers of ``--workers N``, each with its own
writer thread): SQLite's WAL works across the processes of one machine, every write is one
``BEGIN IMMEDIATE`` transaction, and a writer waits up to ``busy_timeout`` for another's. Opening a
new database from several processes at once is safe too: the schema is ``IF NOT EXISTS`` and the
meta rows ``INSERT OR IGNORE``.

The class is synchronous and not thread-safe: the admin server calls it from one worker thread
(``mqhook.admin.state``) so the event loop never waits for a disk sync; the CLI calls it directly.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mqhook.errors import MqhookError

__all__ = ["ApiKeyRow", "Store", "StoreError", "TokenRow", "UserRow", "WebhookRow", "digest"]

DB_NAME = "mqhook.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY, api_key TEXT NOT NULL UNIQUE, secret_hash TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', enable INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (
    name TEXT PRIMARY KEY, config TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL);
"""

UserRow = tuple[str, str, str, float]  # username, password_hash, description, created_at
ApiKeyRow = tuple[str, str, str, str, bool, float]  # name, api_key, secret_hash, description, enable, created_at
TokenRow = tuple[str, str, float]  # token_hash, username, expires_at
WebhookRow = tuple[str, str, float, float]  # name, config JSON, created_at, updated_at


class StoreError(MqhookError):
    """The data directory cannot be used (not creatable, not writable, not a database)."""


def digest(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret (an API secret, a bearer token)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Store:
    """One SQLite database in ``data_dir`` (created, mode 0700, if missing)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / DB_NAME
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():  # created by us, readable by the owner only
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            # check_same_thread=False: the admin server uses it from its one worker thread, made
            # after this constructor ran on the loop's thread; never from two threads at once.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # First: another process (a --workers worker) may hold the database while this one opens it.
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._wal()
            self._db.execute("PRAGMA synchronous = FULL")
            with self._tx() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (secrets.token_hex(16),))
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: written by a newer mqhook (schema {row[0]}, this one knows {SCHEMA_VERSION})"
                )
            self.id: str = self.meta("store_id")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"data directory {str(self.dir)!r} ($.data_dir): {exc}") from exc

    def _wal(self) -> None:
        """``journal_mode = WAL``. Switching a new database to WAL takes an exclusive lock that
        SQLite does not wait for (no busy handler): when another process is switching it or holds
        it at that moment, this one tries again, for up to ``busy_timeout``."""
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed (and synced) on success, rolled back on error."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- users -----------------------------------------------------------------------------------

    def users(self) -> list[UserRow]:
        return self._db.execute("SELECT username, password_hash, description, created_at FROM users").fetchall()

    def user(self, username: str) -> UserRow | None:
        return self._db.execute(
            "SELECT username, password_hash, description, created_at FROM users WHERE username = ?", (username,)
        ).fetchone()

    def add_user(self, username: str, password_hash: str, description: str = "") -> bool:
        """False if the name is taken."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO users VALUES (?, ?, ?, ?)", (username, password_hash, description, time.time())
            )
            return cur.rowcount == 1

    def add_first_user(self, username: str, password_hash: str, description: str = "") -> bool:
        """Add ``username`` if there is no user at all (checked and written in one transaction: of
        several processes starting at once on one database, one adds it); False otherwise."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None:
                return False
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?)", (username, password_hash, description, time.time()))
            return True

    def set_password(self, username: str, password_hash: str) -> bool:
        """Change a password and end the user's tokens; False if there is no such user."""
        with self._tx() as db:
            cur = db.execute("UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username))
            db.execute("DELETE FROM tokens WHERE username = ?", (username,))
            return cur.rowcount == 1

    def delete_user(self, username: str) -> str:
        """'deleted', 'missing' or 'last' (the last administrator is never deleted)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is None:
                return "missing"
            if db.execute("SELECT COUNT(*) FROM users").fetchone()[0] <= 1:
                return "last"
            db.execute("DELETE FROM users WHERE username = ?", (username,))
            db.execute("DELETE FROM tokens WHERE username = ?", (username,))
            return "deleted"

    # -- bearer tokens ---------------------------------------------------------------------------

    def tokens(self, now: float) -> list[TokenRow]:
        """The unexpired tokens (expired ones are deleted)."""
        with self._tx() as db:
            db.execute("DELETE FROM tokens WHERE expires_at <= ?", (now,))
        return self._db.execute("SELECT token_hash, username, expires_at FROM tokens").fetchall()

    def live_tokens(self, now: float) -> list[TokenRow]:
        """The unexpired tokens (read only)."""
        return self._db.execute(
            "SELECT token_hash, username, expires_at FROM tokens WHERE expires_at > ?", (now,)
        ).fetchall()

    def add_token(self, token_hash: str, username: str, expires_at: float) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO tokens VALUES (?, ?, ?)", (token_hash, username, expires_at))

    def delete_token(self, token_hash: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,))

    # -- API keys --------------------------------------------------------------------------------

    def api_keys(self) -> list[ApiKeyRow]:
        rows = self._db.execute(
            "SELECT name, api_key, secret_hash, description, enable, created_at FROM api_keys ORDER BY created_at"
        ).fetchall()
        return [(n, k, s, d, bool(e), c) for n, k, s, d, e, c in rows]

    def add_api_key(self, row: ApiKeyRow) -> bool:
        """False if the name is taken."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO api_keys VALUES (?, ?, ?, ?, ?, ?)", row)
            return cur.rowcount == 1

    def update_api_key(self, name: str, description: str, enable: bool) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE api_keys SET description = ?, enable = ? WHERE name = ?", (description, int(enable), name)
            )
            return cur.rowcount == 1

    def delete_api_key(self, name: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount == 1

    # -- webhooks ----------------------------------------------------------------------------------

    def webhooks(self) -> list[WebhookRow]:
        return self._db.execute(
            "SELECT name, config, created_at, updated_at FROM webhooks ORDER BY created_at, name"
        ).fetchall()

    def put_webhook(self, name: str, config_json: str, create: bool) -> tuple[float, float] | None:
        """Insert (``create``) or replace a webhook's config -> (created_at, updated_at); None if
        creating a name that exists or replacing one that does not."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT created_at FROM webhooks WHERE name = ?", (name,)).fetchone()
            if (row is None) != create:
                return None
            created = now if row is None else row[0]
            db.execute("INSERT OR REPLACE INTO webhooks VALUES (?, ?, ?, ?)", (name, config_json, created, now))
            return created, now

    def delete_webhook(self, name: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM webhooks WHERE name = ?", (name,)).rowcount == 1

    def meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]
