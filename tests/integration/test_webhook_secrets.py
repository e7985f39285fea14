"""Webhook secrets never leak, and webhook configs are checked, against a real broker process.

Secrets: the URL's password, ``secret`` and ``Authorization``-like header values appear in no
``last_error``, no ``/api/v1/stats``, no log line, no config error and no admin API answer.
Checks: unknown template variables and characters a URL may not hold are refused naming the
field; a variable in the URL path is one path segment whatever the client id holds.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
from typing import Any

import pytest

from .receiver import Receivers, config_toml, webhook, webhook_stats
from .util import wait_until

PASSWORD = "s3cr3tpw"
SECRET = "topsecret-signing-key"
TOKEN = "Bearer tok-9f8e7d"
SECRETS = (PASSWORD, SECRET, TOKEN, "tok-9f8e7d")


@pytest.fixture
def rx():
    yield from Receivers.fixture()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_no_secret(text: str, where: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{where} shows {leaked}: {text[:2000]}"


def start_fails(broker: Any, tmp_path: Any, config: str) -> str:
    """``mqhook run --config`` must exit non-zero; returns its stderr."""
    path = tmp_path / "bad.toml"
    path.write_text(config)
    proc = broker.popen(["run", "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--config", str(path)])
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("mqhook started with an invalid webhook config")
    assert proc.returncode != 0, err
    return err


def secret_entry(**opts: Any) -> dict[str, Any]:
    """A webhook carrying every kind of secret, plus ``opts``."""
    headers = {"content-type": "application/json", "Authorization": TOKEN, **opts.pop("headers", {})}
    url = opts.pop("url", f"http://user:{PASSWORD}@127.0.0.1:9/x")
    return webhook("wh1", url, **{"secret": SECRET, "headers": headers, "max_retries": 0, **opts})


# -- secrets ---------------------------------------------------------------------------------------


def test_url_password_is_in_no_last_error_stats_or_log_line(broker, clients, uid):
    """The issue's probe: --webhook with a password, nothing listening: last_error and the WARNING."""
    url = f"http://user:{PASSWORD}@127.0.0.1:{free_port()}/x"
    b = broker(extra_args=["--webhook", f"wh1={url}"])
    c = clients(b, f"{uid}-pub")
    c.publish(f"{uid}/t", b"hello", qos=1)
    wait_until(lambda: webhook_stats(b, "wh1")["last_error"], timeout=10)
    last_error = webhook_stats(b, "wh1")["last_error"]
    assert "user:******@127.0.0.1" in last_error and "connect" in last_error, last_error
    status, body, _ = b.request("GET", "/api/v1/stats")
    assert status == 200
    assert_no_secret(body.decode(), "/api/v1/stats")
    wait_until(lambda: "WARNING" in b.stderr_text() and "wh1" in b.stderr_text(), timeout=5)
    log = b.stderr_text()
    assert "user:******@127.0.0.1" in log, log
    assert_no_secret(log, "the log")
    status, item = b.api("GET", "/api/v1/webhooks/wh1")
    assert status == 200 and item["config"]["url"].startswith("http://user:******@127.0.0.1:"), item
    assert_no_secret(json.dumps(item), "GET /api/v1/webhooks/wh1")
    status, out = b.api("GET", "/api/v1/webhooks/wh1/deliveries")
    assert status == 200 and out["data"], out
    assert_no_secret(json.dumps(out), "deliveries")


@pytest.mark.parametrize(
    ("opts", "field", "shown"),
    [
        ({"events": ["message.publish", "message.publsh"]}, "events[1]", "'message.publsh'"),
        ({"events": "message.publish"}, "events", "'message.publish'"),
        ({"topics": ["a/#/b"]}, "topics[0]", "'a/#/b'"),
        ({"topics": [1]}, "topics[0]", "1"),
        ({"retry_on": [200]}, "retry_on[0]", "200"),
        ({"retry_on": ["6xx"]}, "retry_on[0]", "'6xx'"),
        ({"headers": {"bad name": "v"}}, "headers.bad name", "'bad name'"),
        ({"headers": {"Authorization": TOKEN + "\n"}}, "headers.Authorization", "'<redacted>'"),
        ({"headers": {"Authorization": TOKEN + " ${"}}, "headers.Authorization", "'<redacted>'"),
        ({"headers": {"Authorization": TOKEN + " ${nosuchfield}"}}, "headers.Authorization", "'<redacted>'"),
        ({"url": f"ftp://user:{PASSWORD}@127.0.0.1:9/x"}, "url", "'ftp://user:******@127.0.0.1:9/x'"),
        ({"url": f"http://user:{PASSWORD}@127.0.0.1:9/a b"}, "url", "'http://user:******@127.0.0.1:9/a b'"),
        ({"secret": ""}, "secret", "'<redacted>'"),
    ],
)
def test_config_errors_print_only_the_field_and_no_secret(broker, tmp_path, opts, field, shown):
    entry = secret_entry(**opts)
    err = start_fails(broker, tmp_path, config_toml([entry]))
    assert f"$.webhooks[0].{field}: {shown} is invalid" in err, err
    assert_no_secret(err, "the config error")


def test_headers_given_as_a_list_are_not_printed(broker, tmp_path):
    """A list where a table belongs: its strings may be 'Authorization: ...' lines."""
    entry = secret_entry()
    entry["headers"] = [f"Authorization: {TOKEN}"]
    err = start_fails(broker, tmp_path, config_toml([entry]))
    assert "$.webhooks[0].headers: '<redacted>' is invalid; expected `object`, got `array`" in err, err
    assert_no_secret(err, "the config error")


def test_api_hides_the_url_password_and_keeps_it_when_sent_back(broker, rx):
    r = rx()
    b = broker()
    url = f"http://user:{PASSWORD}@127.0.0.1:{r.port}/hook"
    hook = {"name": "sec", "url": url, "secret": SECRET, "headers": {"Authorization-X": "v", "x-api-key": "k"}}
    status, item = b.api("POST", "/api/v1/webhooks", hook)
    assert status == 201, item
    masked = f"http://user:******@127.0.0.1:{r.port}/hook"
    assert item["config"]["url"] == masked
    for method, path in (("GET", "/api/v1/webhooks/sec"), ("GET", "/api/v1/webhooks")):
        status, out = b.api(method, path)
        assert status == 200 and masked in json.dumps(out)
        assert_no_secret(json.dumps(out), f"{method} {path}")
    # GET -> edit -> PUT with the mask: the stored password is kept (the receiver gets it as Basic auth)
    cfg = dict(item["config"], description="edited")
    status, item = b.api("PUT", "/api/v1/webhooks/sec", cfg)
    assert status == 200 and item["config"]["url"] == masked and item["config"]["description"] == "edited", item
    status, result = b.api("POST", "/api/v1/webhooks/sec/test")
    assert status == 200 and result["ok"], result
    assert result["url"] == masked, result
    assert_no_secret(json.dumps(result), "the Test answer")
    auth = r.requests()[-1].headers["Authorization"]
    assert base64.b64decode(auth.split()[1]).decode() == f"user:{PASSWORD}"
    # a Test of an edited body with the mask uses the stored password too
    status, result = b.api("POST", "/api/v1/webhooks/sec/test", dict(cfg, url=masked + "2"))
    assert status == 200 and result["url"] == masked + "2", result
    assert base64.b64decode(r.requests()[-1].headers["Authorization"].split()[1]).decode() == f"user:{PASSWORD}"
    # a new password replaces it; the mask with no stored password is a 400 naming url
    status, item = b.api("PUT", "/api/v1/webhooks/sec", dict(cfg, url=f"http://user:other@127.0.0.1:{r.port}/h"))
    assert status == 200 and item["config"]["url"] == f"http://user:******@127.0.0.1:{r.port}/h"
    status, err = b.api("POST", "/api/v1/webhooks", dict(hook, name="fresh", url=masked))
    assert status == 400 and err["field"] == "url", err
    status, err = b.api("PUT", "/api/v1/webhooks/sec", dict(cfg, url=f"http://127.0.0.1:{r.port}/h"))
    assert status == 200
    status, err = b.api("PUT", "/api/v1/webhooks/sec", dict(cfg, url=masked))
    assert status == 400 and err["field"] == "url", err


def test_api_errors_hide_secrets(broker):
    b = broker()
    base = {"name": "e", "url": f"http://user:{PASSWORD}@127.0.0.1:9/x", "secret": SECRET}
    cases = [
        ({"url": f"http://user:{PASSWORD}@127.0.0.1:9/a b"}, "url"),
        ({"headers": {"Authorization": TOKEN + "\r\n"}}, "headers.Authorization"),
        ({"headers": {"Authorization": TOKEN + " ${"}}, "headers.Authorization"),
        ({"topics": ["a/#/b"]}, "topics[0]"),
        ({"events": ["nope"]}, "events[0]"),
        ({"retry_on": [200]}, "retry_on[0]"),
        ({"secret": ["whsec_x", SECRET]}, "secret"),
    ]
    for change, field in cases:
        status, err = b.api("POST", "/api/v1/webhooks", {**base, **change})
        assert status == 400 and err["field"] == field, (change, err)
        assert_no_secret(json.dumps(err), f"the 400 for {change}")


# -- checks ------------------------------------------------------------------------------------------


def test_unknown_template_variable_stops_start_up_naming_field_and_variable(broker, tmp_path):
    err = start_fails(
        broker, tmp_path, config_toml([webhook("w", "http://127.0.0.1:9/", body='{"a": ${nosuchfield}}')])
    )
    assert "$.webhooks[0].body: " in err and "${nosuchfield} is not a field" in err, err


def test_variable_of_none_of_the_selected_events_is_refused(broker, tmp_path):
    hook = webhook("w", "http://127.0.0.1:9/", events=["client.connected"], body='{"p": ${json:payload}}')
    err = start_fails(broker, tmp_path, config_toml([hook]))
    assert "$.webhooks[0].body: " in err and "${payload} is not a field of client.connected" in err, err


def test_url_with_a_space_stops_start_up_naming_url(broker, tmp_path):
    err = start_fails(broker, tmp_path, config_toml([webhook("w", "http://127.0.0.1:9/a b")]))
    assert "$.webhooks[0].url: 'http://127.0.0.1:9/a b' is invalid" in err and "' ' at character" in err, err


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"body": '{"a": ${nosuchfield}}'}, "body", "${nosuchfield}"),
        ({"headers": {"x-a": "${nosuchfield}"}}, "headers.x-a", "${nosuchfield}"),
        ({"url": "http://127.0.0.1:9/${nosuchfield}"}, "url", "${nosuchfield}"),
        ({"events": ["session.subscribed"], "body": "${payload.x}"}, "body", "${payload.x}"),
        ({"url": "http://127.0.0.1:9/a b"}, "url", "' '"),
        ({"url": 'http://127.0.0.1:9/a"b'}, "url", "'\"'"),
        ({"url": "http://127.0.0.1:9/a%zz"}, "url", "'%'"),
    ],
)
def test_api_refuses_bad_templates_and_urls_naming_the_field(broker, change, field, words):
    b = broker()
    status, err = b.api("POST", "/api/v1/webhooks", {"name": "w", "url": "http://127.0.0.1:9/", **change})
    assert status == 400 and err["field"] == field and words in err["message"], err


def test_client_id_in_the_url_path_is_one_segment(broker, rx, clients, uid):
    """The issue's probe: client id ../../../etc must not climb out of /hook/."""
    r = rx()
    hook = webhook(
        "seg",
        r.url("/hook/${clientid}/t?c=${clientid}&u=${username}"),
        events=["client.connected"],
    )
    b = broker(config_toml([hook]))
    ids = ["../../../etc", "..", ".", "a/b?c#d%e f&g=h+i"]
    for cid in ids:
        clients(b, cid).disconnect()
    got = r.wait_for(lambda: len(r.requests()) >= len(ids) and r.requests(), what="one request per client")
    by_client = {req.events[0]["clientid"]: req.raw_path for req in got}
    assert by_client["../../../etc"] == "/hook/..%2F..%2F..%2Fetc/t?c=..%2F..%2F..%2Fetc&u=undefined"
    assert by_client[".."] == "/hook/%2E%2E/t?c=..&u=undefined"
    assert by_client["."] == "/hook/%2E/t?c=.&u=undefined"
    assert (
        by_client["a/b?c#d%e f&g=h+i"]
        == "/hook/a%2Fb%3Fc%23d%25e%20f%26g%3Dh%2Bi/t?c=a%2Fb%3Fc%23d%25e%20f%26g%3Dh%2Bi&u=undefined"
    )
    assert all(req.path.startswith("/hook/") for req in got), [req.path for req in got]
