"""Admin API authentication (docs/api.md, Authentication): bearer tokens, API keys, users, the
first administrator's password, and which routes are open."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path

from conftest import ADMIN_PASSWORD, PYTHON, ROOT, Broker, broker_env, wait_until

from .helpers import (
    OPEN_ROUTES,
    BareProcess,
    assert_error,
    basic,
    bearer,
    documented_routes,
    files_containing,
    fill,
    fresh_token,
    listing,
    login,
    openapi,
)

# A placeholder for every path parameter: a request without credentials must be refused before
# the object is looked up.
PLACEHOLDERS = {"name": "nope", "clientid": "nope", "username": "nope"}


# ---------------------------------------------------------------------------- open and closed routes
def test_every_protected_route_answers_401_without_credentials(default_broker: Broker) -> None:
    b = default_broker
    routes = [r for r in documented_routes(openapi(b)) if r not in OPEN_ROUTES]
    assert ("GET", "/api/v1/webhooks") in routes and ("POST", "/api/v1/webhooks") in routes, routes
    bad = []
    for method, template in routes:
        path = fill(template, PLACEHOLDERS)
        body = {} if method in ("POST", "PUT") else None
        for auth in (None, "Bearer garbage", basic("nokey", "nosecret")):
            status, out = b.api(method, path, body, auth=auth)
            if status != 401 or not isinstance(out, dict) or out.get("code") != "UNAUTHORIZED":
                bad.append(f"{method} {path} auth={auth!r} -> {status} {out}")
    assert not bad, "routes that do not answer 401 UNAUTHORIZED without valid credentials:\n" + "\n".join(bad)


def test_open_routes_need_no_credentials(default_broker: Broker) -> None:
    b = default_broker
    status, body = b.http_get("/healthz", auth=None)
    assert status == 200, body
    status, body = b.http_get("/metrics", auth=None)
    assert status == 200 and b"mqhook_" in body, (status, body[:200])
    status, doc = b.api("GET", "/api/v1/openapi.json", auth=None)
    assert status == 200 and "paths" in doc


def test_dashboard_static_files_are_open(default_broker: Broker) -> None:
    status, body, headers = default_broker.request("GET", "/", auth=None)
    assert status == 200, (status, body[:200])
    assert "html" in headers.get("Content-Type", ""), headers


def test_metrics_auth_setting_closes_metrics(broker) -> None:
    b = broker("[admin]\nmetrics_auth = true\n")
    status, body = b.api("GET", "/metrics", auth=None)
    assert_error(status, body, 401, "UNAUTHORIZED")
    status, raw = b.http_get("/metrics")
    assert status == 200 and b"mqhook_" in raw
    assert b.http_get("/healthz", auth=None)[0] == 200


def test_unknown_route_is_404_json(default_broker: Broker) -> None:
    status, body = default_broker.api("GET", "/api/v1/no-such-route")
    assert_error(status, body, 404, "NOT_FOUND")


# ---------------------------------------------------------------------------- tokens
def test_login_right_password_gives_a_working_token(default_broker: Broker) -> None:
    b = default_broker
    t0 = time.time()
    status, body = login(b)
    assert status == 200, body
    assert isinstance(body.get("token"), str) and body["token"], body
    assert body.get("username") == "admin", body
    # default admin.token_expiry is 1h
    assert isinstance(body.get("expires_at"), int | float), body
    assert t0 + 3600 - 60 <= body["expires_at"] <= time.time() + 3600 + 60, body
    status, out = b.api("GET", "/api/v1/webhooks", auth=bearer(body["token"]))
    assert status == 200, out


def test_login_wrong_password_or_user_is_401(default_broker: Broker) -> None:
    b = default_broker
    status, body = login(b, "admin", ADMIN_PASSWORD + "x")
    assert_error(status, body, 401, "UNAUTHORIZED")
    assert "token" not in body
    status, body = login(b, "nobody-here", ADMIN_PASSWORD)
    assert_error(status, body, 401, "UNAUTHORIZED")


def test_failed_logins_are_slowed(broker) -> None:
    """After 5 failures from an address, at most one attempt per second is heard."""
    b = broker()
    for _ in range(5):
        assert_error(*login(b, "admin", "wrong-password"), 401, "UNAUTHORIZED")
    t5 = time.monotonic()
    status, body = login(b)
    elapsed = time.monotonic() - t5
    assert status != 200 or elapsed >= 0.9, f"6th attempt {elapsed:.3f}s after 5 failures was let through at once"
    assert status in (200, 401, 429), (status, body)
    if status != 200:
        assert isinstance(body, dict) and body.get("code") and body.get("message"), body
    # a second later the right password is heard again
    assert wait_until(lambda: login(b)[0] == 200, timeout=4, interval=0.3), "never allowed to log in again"


def test_garbage_bearer_tokens_are_401(default_broker: Broker) -> None:
    b = default_broker
    token = fresh_token(b)
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    for header in ("Bearer garbage", "Bearer " + forged, "Bearer ", "Token " + token, "garbage"):
        status, body = b.api("GET", "/api/v1/webhooks", auth=header)
        assert_error(status, body, 401, "UNAUTHORIZED")


def test_logout_ends_the_token(default_broker: Broker) -> None:
    b = default_broker
    token, other = fresh_token(b), fresh_token(b)
    assert b.api("GET", "/api/v1/webhooks", auth=bearer(token))[0] == 200
    status, body = b.api("POST", "/api/v1/logout", auth=bearer(token))
    assert status in (200, 204), (status, body)
    status, body = b.api("GET", "/api/v1/webhooks", auth=bearer(token))
    assert_error(status, body, 401, "UNAUTHORIZED")
    # only the token used ends
    assert b.api("GET", "/api/v1/webhooks", auth=bearer(other))[0] == 200


def expire_stored_tokens(data_dir: Path) -> int:
    """Set every stored token's expiry to the past, in the SQLite store of the data directory
    (docs/api.md: tokens survive a restart; the store is SQLite). Returns the rows changed."""
    changed = 0
    for path in data_dir.rglob("*"):
        if not path.is_file() or path.read_bytes()[:16] != b"SQLite format 3\0":
            continue
        db = sqlite3.connect(path)
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for col in [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]:
                    if "expir" in col.lower() and "token" in table.lower():
                        changed += db.execute(f'UPDATE "{table}" SET "{col}" = 1.0').rowcount
            db.commit()
        finally:
            db.close()
    return changed


def test_expired_token_is_401(broker) -> None:
    """admin.token_expiry sets expires_at; a token past it is refused. The wait is not real: the
    stored expiry is moved to the past while the broker is stopped (token_expiry may have a lower
    bound of a minute or more, too long to wait for in a test)."""
    b = broker('[admin]\ntoken_expiry = "2m"\n')
    t0 = time.time()
    status, body = login(b)
    assert status == 200, body
    assert t0 + 110 <= body["expires_at"] <= time.time() + 130, f"token_expiry = 2m but expires_at is {body}"
    auth = bearer(body["token"])
    assert b.api("GET", "/api/v1/webhooks", auth=auth)[0] == 200
    assert b.stop() == 0
    assert expire_stored_tokens(b.data_dir) >= 1, "no stored token expiry found in the data dir's SQLite files"
    b2 = broker(data_dir=b.data_dir)
    status, body = b2.api("GET", "/api/v1/webhooks", auth=auth)
    assert_error(status, body, 401, "UNAUTHORIZED")
    assert login(b2)[0] == 200


# ---------------------------------------------------------------------------- API keys
def test_api_key_lifecycle(default_broker: Broker, nid: str) -> None:
    b = default_broker
    status, key = b.api("POST", "/api/v1/api_keys", {"name": nid, "description": "ci", "enable": True})
    assert status == 201, key
    assert set(key) == {"name", "api_key", "api_secret", "description", "enable", "created_at"}, key
    assert key["name"] == nid and key["description"] == "ci" and key["enable"] is True
    api_key, secret = key["api_key"], key["api_secret"]
    assert isinstance(secret, str) and len(secret) >= 16, key

    # the secret is shown only in the create answer
    status, raw, _ = b.request("GET", "/api/v1/api_keys")
    assert status == 200
    assert secret.encode() not in raw, "api_secret appears in GET /api/v1/api_keys"
    names = [k.get("name") for k in listing(json.loads(raw))]
    assert nid in names, names
    status, raw, _ = b.request("GET", f"/api/v1/api_keys/{nid}")
    assert status == 200, raw
    assert secret.encode() not in raw and b"api_secret" not in raw, raw
    assert json.loads(raw)["api_key"] == api_key

    # HTTP Basic works; a wrong secret does not
    status, out = b.api("GET", "/api/v1/webhooks", auth=(api_key, secret))
    assert status == 200, out
    status, out = b.api("GET", "/api/v1/webhooks", auth=(api_key, secret + "x"))
    assert_error(status, out, 401, "UNAUTHORIZED")

    # a duplicate name
    status, out = b.api("POST", "/api/v1/api_keys", {"name": nid})
    assert_error(status, out, 409, "ALREADY_EXISTS")

    # disabled: 403 FORBIDDEN; enabled again: works
    status, out = b.api("PUT", f"/api/v1/api_keys/{nid}", {"enable": False})
    assert status == 200, out
    assert out["enable"] is False and "api_secret" not in out, out
    status, out = b.api("GET", "/api/v1/webhooks", auth=(api_key, secret))
    assert_error(status, out, 403, "FORBIDDEN")
    status, out = b.api("PUT", f"/api/v1/api_keys/{nid}", {"description": "changed"})
    assert status == 200 and out["description"] == "changed" and out["enable"] is False, out
    status, out = b.api("PUT", f"/api/v1/api_keys/{nid}", {"enable": True})
    assert status == 200, out
    assert b.api("GET", "/api/v1/webhooks", auth=(api_key, secret))[0] == 200

    # deleted: 401
    status, out = b.api("DELETE", f"/api/v1/api_keys/{nid}")
    assert status == 204, out
    status, out = b.api("GET", "/api/v1/webhooks", auth=(api_key, secret))
    assert_error(status, out, 401, "UNAUTHORIZED")
    status, out = b.api("GET", f"/api/v1/api_keys/{nid}")
    assert_error(status, out, 404, "NOT_FOUND")


def test_api_key_bad_input(default_broker: Broker, nid: str) -> None:
    b = default_broker
    status, out = b.api("POST", "/api/v1/api_keys", {"name": nid, "bogus": 1})
    assert_error(status, out, 400, "BAD_REQUEST", "bogus")
    status, out = b.api("POST", "/api/v1/api_keys", {"name": nid, "enable": "yes"})
    assert_error(status, out, 400, "BAD_REQUEST", "enable")
    status, out = b.api("PUT", "/api/v1/api_keys/nope-" + nid, {"enable": False})
    assert_error(status, out, 404, "NOT_FOUND")


# ---------------------------------------------------------------------------- users
def test_users_add_change_password_delete(default_broker: Broker, nid: str) -> None:
    b = default_broker
    user, pw1, pw2 = f"u-{nid}", f"first-{nid}-pw", f"second-{nid}-pw"
    status, out = b.api("POST", "/api/v1/users", {"username": user, "password": pw1, "description": "ops"})
    assert status == 201, out
    status, raw, _ = b.request("GET", "/api/v1/users")
    assert status == 200, raw
    assert pw1.encode() not in raw
    users = listing(json.loads(raw))
    assert {"admin", user} <= {u.get("username") for u in users}, users
    status, out = b.api("POST", "/api/v1/users", {"username": user, "password": "x" * 12})
    assert_error(status, out, 409, "ALREADY_EXISTS")

    token = fresh_token(b, user, pw1)
    assert b.api("GET", "/api/v1/webhooks", auth=bearer(token))[0] == 200

    status, out = b.api("POST", f"/api/v1/users/{user}/change_pwd", {"old_pwd": pw1 + "x", "new_pwd": pw2})
    assert status in (400, 401, 403), f"change_pwd with a wrong old_pwd -> {status}: {out}"
    fresh_token(b, user, pw1)
    status, out = b.api("POST", f"/api/v1/users/{user}/change_pwd", {"old_pwd": pw1, "new_pwd": pw2})
    assert status == 204, out
    status, out = login(b, user, pw1)
    assert_error(status, out, 401, "UNAUTHORIZED")
    fresh_token(b, user, pw2)
    assert not files_containing(b.data_dir, pw2.encode()), "a password is stored in clear"

    status, out = b.api("DELETE", f"/api/v1/users/{user}")
    assert status == 204, out
    status, out = login(b, user, pw2)
    assert_error(status, out, 401, "UNAUTHORIZED")
    status, out = b.api("DELETE", f"/api/v1/users/{user}")
    assert_error(status, out, 404, "NOT_FOUND")


def test_users_bad_input(default_broker: Broker, nid: str) -> None:
    b = default_broker
    status, out = b.api("POST", "/api/v1/users", {"username": f"u-{nid}"})
    assert_error(status, out, 400, "BAD_REQUEST", "password")
    status, out = b.api("POST", "/api/v1/users", {"username": f"u-{nid}", "password": "long-enough-pw", "x": 1})
    assert_error(status, out, 400, "BAD_REQUEST", "x")
    status, out = b.api("POST", "/api/v1/users", raw=b"{nope")
    assert_error(status, out, 400, "BAD_REQUEST", None)
    assert b.api("DELETE", f"/api/v1/users/u-{nid}")[0] == 404
    status, out = b.api("POST", f"/api/v1/users/nope-{nid}/change_pwd", {"old_pwd": "a" * 10, "new_pwd": "b" * 10})
    assert_error(status, out, 404, "NOT_FOUND")


def test_deleting_the_last_admin_is_409(default_broker: Broker) -> None:
    b = default_broker
    status, body = b.api("GET", "/api/v1/users")
    assert status == 200, body
    for u in listing(body):
        if u["username"] != "admin":  # left by another test of this module
            assert b.api("DELETE", f"/api/v1/users/{u['username']}")[0] == 204
    status, out = b.api("DELETE", "/api/v1/users/admin")
    assert_error(status, out, 409, "CONFLICT")
    assert login(b)[0] == 200


def test_admin_password_is_not_stored_in_clear(default_broker: Broker) -> None:
    b = default_broker
    assert login(b)[0] == 200
    files = [p for p in b.data_dir.rglob("*") if p.is_file()]
    assert files, f"nothing stored under the data dir {b.data_dir}"
    assert not files_containing(b.data_dir, ADMIN_PASSWORD.encode()), "the admin password is stored in clear"


# ---------------------------------------------------------------------------- first start, CLI
def candidates(text: str) -> list[str]:
    """Words of the stderr lines that mention a password, most password-like first."""
    words = []
    for line in text.splitlines():
        if "password" in line.lower():
            for w in re.split(r"[\s\"'`,;()<>\[\]]+", line):
                w = w.strip(".:")
                if len(w) < 8 or "/" in w or w.startswith("--"):  # paths, flags
                    continue
                if w.lower() not in ("password", "password:", "mqhook:", "administrator"):
                    words.append(w)
    return sorted(set(words), key=lambda w: (not any(c.isdigit() for c in w), -len(w)))


def test_first_start_prints_a_random_password_once(broker, tmp_path) -> None:
    data = tmp_path / "data"
    first = BareProcess(broker, data)
    try:
        assert wait_until(lambda: "password" in first.stderr().lower(), timeout=5), (
            "no password printed on stderr at the first start:\n" + first.stderr()
        )
        found = None
        for word in candidates(first.stderr())[:4]:  # at most 4 wrong tries: below the login slow-down
            status, body = first.api("POST", "/api/v1/login", {"username": "admin", "password": word})
            if status == 200:
                found = word
                break
        assert found, "none of the words printed with 'password' logs admin in:\n" + first.stderr()
        assert len(found) >= 12, f"random password {found!r} is short"
    finally:
        err1 = first.stop()
    assert not files_containing(data, found.encode()), "the random admin password is stored in clear"

    second = BareProcess(broker, data)
    try:
        status, body = second.api("POST", "/api/v1/login", {"username": "admin", "password": found})
        assert status == 200, body
    finally:
        err2 = second.stop()
    assert found not in err2, "the password was printed again at the second start:\n" + err2
    assert err1.count(found) == 1, err1


def test_admin_passwd_command_sets_the_password(broker, tmp_path) -> None:
    data = tmp_path / "data"
    b = broker(data_dir=data)
    assert login(b)[0] == 200
    assert b.stop() == 0
    new = "changed-by-the-cli-1234"
    proc = subprocess.run(
        [PYTHON, "-m", "mqhook", "admin", "passwd", "--data-dir", str(data), "admin"],
        cwd=ROOT,
        env=broker_env(),
        input=new + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert new not in proc.stdout + proc.stderr, "the CLI echoed the new password"
    assert not files_containing(data, new.encode()), "the new password is stored in clear"

    # a default_password given after the data dir was created is ignored
    b2 = broker(data_dir=data, env={"MQHOOK_ADMIN__DEFAULT_PASSWORD": "another-default-pw"})
    status, body = login(b2, "admin", new)
    assert status == 200, body
    assert_error(*login(b2, "admin", ADMIN_PASSWORD), 401, "UNAUTHORIZED")
    assert_error(*login(b2, "admin", "another-default-pw"), 401, "UNAUTHORIZED")
