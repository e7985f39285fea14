"""What the API creates is stored in the data directory and survives a SIGKILL (docs/api.md,
Webhooks: "stored in the data directory (SQLite) and come back after a restart"; Authentication:
tokens "survive a restart")."""

from __future__ import annotations

import signal
from typing import Any

from conftest import ADMIN_PASSWORD

from .helpers import assert_config_equal, bearer, create, fresh_token, get_item, hook, login


def test_webhook_api_key_user_and_token_survive_sigkill(broker, nid: str, receivers: Any, mqtt_clients: Any) -> None:
    r = receivers()
    b = broker()
    cfg = hook(nid, r.url("/p"), nid, description="persisted", batch_size=2, batch_time="10ms", secret="s3cr3t-key")
    created = create(b, cfg)
    disabled = create(b, hook(nid + "-off", r.url("/off"), nid, enable=False))
    status, key = b.api("POST", "/api/v1/api_keys", {"name": nid, "description": "kept"})
    assert status == 201, key
    status, off_key = b.api("POST", "/api/v1/api_keys", {"name": nid + "-off", "enable": False})
    assert status == 201, off_key
    user_pw = "pw-" + nid
    assert b.api("POST", "/api/v1/users", {"username": "u" + nid, "password": user_pw})[0] == 201
    token = fresh_token(b)
    # changed after creation: the stored value is the latest
    edited = {**cfg, "description": "persisted and edited"}
    assert b.api("PUT", f"/api/v1/webhooks/{nid}", edited)[0] == 200

    b.stop(signal.SIGKILL)
    b2 = broker(data_dir=b.data_dir)

    item = get_item(b2, nid)
    assert item["source"] == "api" and item["read_only"] is False, item
    expected = {**edited, "secret": "******"}
    assert_config_equal(item["config"], expected)
    assert item["created_at"] == created["created_at"], (created, item)
    off = get_item(b2, nid + "-off")
    assert off["config"]["enable"] is False and off["status"] == "disabled", off
    assert disabled["created_at"] == off["created_at"]

    # the api key authenticates, the disabled one is still refused
    status, out = b2.api("GET", "/api/v1/webhooks", auth=(key["api_key"], key["api_secret"]))
    assert status == 200, out
    assert b2.api("GET", "/api/v1/webhooks", auth=(off_key["api_key"], off_key["api_secret"]))[0] == 403
    status, out = b2.api("GET", f"/api/v1/api_keys/{nid}")
    assert status == 200 and out["description"] == "kept", out
    # the token and the other administrator survive too
    assert b2.api("GET", "/api/v1/webhooks", auth=bearer(token))[0] == 200
    assert login(b2, "u" + nid, user_pw)[0] == 200
    assert login(b2, "admin", ADMIN_PASSWORD)[0] == 200

    # and the restored webhook delivers, with its stored secret
    pub = mqtt_clients(b2, f"{nid}-pub")
    pub.publish(f"{nid}/t", b"after-restart", qos=1)
    r.wait_event("message.publish", payload="after-restart")
    req = next(q for q in r.requests() if q.path == "/p")
    assert req.headers.get("webhook-signature"), dict(req.headers)
    assert not [q for q in r.requests() if q.path == "/off"], "the disabled webhook came back enabled"


def test_deleted_webhook_stays_deleted(broker, nid: str) -> None:
    b = broker()
    create(b, hook(nid, "http://127.0.0.1:9/"))
    create(b, hook(nid + "-kept", "http://127.0.0.1:9/"))
    assert b.api("DELETE", f"/api/v1/webhooks/{nid}")[0] == 204
    status, key = b.api("POST", "/api/v1/api_keys", {"name": nid})
    assert status == 201
    assert b.api("DELETE", f"/api/v1/api_keys/{nid}")[0] == 204
    b.stop(signal.SIGKILL)
    b2 = broker(data_dir=b.data_dir)
    assert b2.api("GET", f"/api/v1/webhooks/{nid}")[0] == 404
    assert b2.api("GET", f"/api/v1/webhooks/{nid}-kept")[0] == 200
    assert b2.api("GET", "/api/v1/webhooks", auth=(key["api_key"], key["api_secret"]))[0] == 401
