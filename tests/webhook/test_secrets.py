"""A webhook's secrets (URL password, ``secret``, Authorization-like headers) never leave in clear:
not in ``last_error``, a log line, a config error, the HTTP client's errors, the Test's answer or
the admin API's view of a config."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

from mqhook.admin.http import ApiError
from mqhook.admin.webhooks import redact, unredact
from mqhook.config import Config
from mqhook.errors import ConfigError
from mqhook.schema import explain
from mqhook.webhook.http import HttpClient
from mqhook.webhook.manager import WebhookManager
from mqhook.webhook.redact import url_password, url_with_password, url_without_password

from .kit import Publish, Receiver, config, free_port, put, run, until, webhook

PASSWORD = "s3cr3tpw"
TOKEN = "Bearer tok-1234"
SECRETS = (PASSWORD, TOKEN, "tok-1234", "whsec_c2VjcmV0LWtleQ==")


def assert_clean(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{leaked} in {text!r}"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@h/x", "http://user:******@h/x"),
        ("https://user:p%40ss@h:8443/a?b=c@d", "https://user:******@h:8443/a?b=c@d"),
        ("http://u:@h/", "http://u:******@h/"),
        ("http://user@h/x", "http://user@h/x"),  # no password: nothing to hide
        ("http://h/x?u=a:b@c", "http://h/x?u=a:b@c"),  # '@' after the authority is not userinfo
        ("http://a:b@c:d@h/", "http://a:******@h/"),  # the last '@' ends the userinfo
        ("http://user:pw@h/a b", "http://user:******@h/a b"),  # not a valid URL: hidden all the same
        ("user:pw@h/x", "user:******@h/x"),  # no scheme
        ("http://user:pw@h", "http://user:******@h"),
        ("http://user:p#w?x@h/", "http://user:******@h/"),  # a raw '#' or '?' in it: still hidden whole
    ],
)
def test_url_without_password(url: str, shown: str) -> None:
    assert url_without_password(url) == shown
    if url_password(url) is not None:
        assert url_with_password(shown, url_password(url) or "") == url


def test_last_error_and_warning_hide_the_url_password(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        wh = webhook(f"http://user:{PASSWORD}@127.0.0.1:{free_port()}/x", max_retries=0)
        wh.start()
        with caplog.at_level(logging.WARNING, logger="mqhook.webhook"):
            put(wh, Publish(clientid="c"))
            await until(lambda: wh.failed + sum(wh.dropped.values()) == 1)
        assert wh.last_error is not None and "http://user:******@127.0.0.1:" in wh.last_error, wh.last_error
        assert_clean(wh.last_error)
        assert_clean(repr(wh.stats()))
        assert_clean(repr(list(wh.deliveries)))
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings and "user:******@" in warnings[0], warnings
        assert_clean("\n".join(warnings))
        await wh.close(1.0)

    run(body())


def test_a_refused_authorization_header_does_not_show_its_value() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url(), headers={"Authorization": "Bearer tok-1234 ${username}"})
        wh.start()
        put(wh, Publish(clientid="evil", username="a\r\nX-Injected: 1"))
        await until(lambda: wh.dropped["request_refused"] == 1)
        assert wh.last_error is not None and "Authorization" in wh.last_error and "CR" in wh.last_error
        assert_clean(wh.last_error)
        await wh.close(1.0)
        await rx.stop()

    run(body())


def test_http_client_errors_hide_the_url_password() -> None:
    client = HttpClient(f"http://user:{PASSWORD}@127.0.0.1:9/x")
    with pytest.raises(ValueError) as info:
        client.target(f"http://other:{PASSWORD}@127.0.0.2:9/x")
    assert "user:******@" in str(info.value) and "other:******@" in str(info.value)
    assert_clean(str(info.value))


def test_the_test_button_answer_hides_the_url_password() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        manager = WebhookManager([], node="n@h")
        result = await manager.test(config(rx.url().replace("http://", f"http://user:{PASSWORD}@")))
        assert result.ok and result.url == rx.url().replace("http://", "http://user:******@"), result
        assert rx.requests[0].headers["Authorization"].startswith("Basic ")
        assert_clean(repr(result))
        await rx.stop()

    run(body())


SECRET_ENTRY: dict[str, Any] = {
    "name": "wh",
    "url": f"http://user:{PASSWORD}@127.0.0.1:9/x",
    "secret": "whsec_c2VjcmV0LWtleQ==",
    "headers": {"Authorization": TOKEN, "x-api-key": "tok-1234"},
}


def _error(**change: Any) -> str:
    with pytest.raises(ConfigError) as info:
        config(**{**SECRET_ENTRY, **change})  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"events": ["message.publish", "nope"]}, "$.webhooks[0].events[1]: 'nope' is invalid"),
        ({"events": {"a": 1}}, "$.webhooks[0].events: {'a': 1} is invalid"),
        ({"topics": ["a/#/b"]}, "$.webhooks[0].topics[0]: 'a/#/b' is invalid"),
        ({"topics": "t"}, "$.webhooks[0].topics: 't' is invalid"),
        ({"retry_on": [200]}, "$.webhooks[0].retry_on[0]: 200 is invalid"),
        ({"retry_on": [1.5]}, "$.webhooks[0].retry_on[0]: 1.5 is invalid"),
        ({"headers": {"Authorization": TOKEN + "\n"}}, "$.webhooks[0].headers.Authorization: '<redacted>' is invalid"),
        ({"headers": {"x-api-key": "tok-1234${"}}, "$.webhooks[0].headers.x-api-key: '<redacted>' is invalid"),
        ({"headers": [f"Authorization: {TOKEN}"]}, "$.webhooks[0].headers: '<redacted>' is invalid"),
        ({"headers": {"bad name": "v", "Authorization": TOKEN}}, "$.webhooks[0].headers.bad name: 'bad name'"),
        ({"url": f"ftp://user:{PASSWORD}@h/"}, "$.webhooks[0].url: 'ftp://user:******@h/' is invalid"),
        ({"url": ["http://user:pw@h/"]}, "$.webhooks[0].url: '<redacted>' is invalid"),
        ({"secret": ["whsec_c2VjcmV0LWtleQ=="]}, "$.webhooks[0].secret: '<redacted>' is invalid"),
        ({"secret": "whsec_!!!"}, "$.webhooks[0].secret: '<redacted>' is invalid"),
    ],
)
def test_config_errors_show_only_the_field_and_no_secret(change: dict[str, Any], expected: str) -> None:
    text = _error(**change)
    assert expected in text, text
    assert_clean(text)


def test_an_error_placed_on_the_whole_entry_does_not_print_it() -> None:
    """msgspec puts an error raised in a Struct's checks at the Struct's path: without a field
    to name, the entry (with its secrets) must not be printed as 'the value'."""
    tree = {"webhooks": [SECRET_ENTRY]}
    exc = msgspec.ValidationError("something is wrong - at `$.webhooks[0]`")
    text = explain(exc, tree, Config)
    assert text == "$.webhooks[0]: invalid; something is wrong", text


def test_admin_view_hides_the_url_password_and_a_returned_mask_keeps_it() -> None:
    saved = config(**SECRET_ENTRY)  # type: ignore[arg-type]
    tree = redact(saved)
    assert tree["url"] == "http://user:******@127.0.0.1:9/x"
    assert tree["secret"] == "******" and tree["headers"] == {"Authorization": "******", "x-api-key": "******"}
    back = unredact(tree, saved)
    assert back["url"] == saved.url and back["secret"] == saved.secret and back["headers"] == saved.headers
    moved = unredact({**tree, "url": "http://user:******@127.0.0.1:9/y"}, saved)
    assert moved["url"] == f"http://user:{PASSWORD}@127.0.0.1:9/y"
    with pytest.raises(ApiError) as info:
        unredact({"name": "wh", "url": "http://user:******@127.0.0.1:9/y"}, None)
    assert info.value.field == "url"
    plain = config(url="http://127.0.0.1:9/x")
    with pytest.raises(ApiError):
        unredact({"url": "http://user:******@127.0.0.1:9/y"}, plain)
