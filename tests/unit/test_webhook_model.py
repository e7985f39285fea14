"""Webhook config model (defaults, validation messages, durations, sizes) and template rendering."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqhook.errors import ConfigError
from mqhook.hooks import ALL_EVENTS
from mqhook.webhook.model import (
    FieldInvalid,
    WebhookConfig,
    parse_duration,
    parse_size,
    parse_webhook,
    webhook_from_flag,
)
from mqhook.webhook.template import Context, compile_template

PATH = "$.webhooks[0]"


def _parse(**settings: Any) -> WebhookConfig:
    return parse_webhook({"name": "wh", "url": "http://127.0.0.1:5000/hook", **settings}, PATH)


def _error(**settings: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(**settings)
    return str(info.value)


# -- defaults -------------------------------------------------------------------------------


def test_defaults_follow_emqx() -> None:
    cfg = _parse()
    assert cfg.enable is True and cfg.description == ""
    assert cfg.events == "all" and cfg.event_set == frozenset(ALL_EVENTS)
    assert cfg.topics == ["#"] and cfg.method == "post"
    assert cfg.headers == {"content-type": "application/json"} and cfg.body is None
    assert cfg.payload_encoding == "plain"
    assert cfg.pool_size == 8 and cfg.inflight_window == 100 and cfg.max_retries == 2
    assert cfg.connect_timeout_s == 15.0 and cfg.request_timeout_s == 15.0
    assert cfg.retry_backoff_s == 1.0 and cfg.retry_backoff_max_s == 30.0
    assert cfg.retry_on == [429, "5xx"] and cfg.batch_size == 1 and cfg.batch_time_s == 0.0
    assert cfg.max_queued_events == 100000 and cfg.max_buffer_bytes_n == 256 * 1024 * 1024
    assert cfg.overflow == "drop_oldest" and cfg.ordering == "none" and cfg.secret is None
    assert cfg.rule_id == "wh_WH_D"


def test_webhook_from_flag() -> None:
    cfg = webhook_from_flag("my-hook=http://127.0.0.1:5000/in")
    assert (cfg.name, cfg.url, cfg.events, cfg.topics) == ("my-hook", "http://127.0.0.1:5000/in", "all", ["#"])
    with pytest.raises(ConfigError, match="NAME=URL"):
        webhook_from_flag("no-equals-sign")
    with pytest.raises(ConfigError, match=r"--webhook\.url: 'ftp://x'"):
        webhook_from_flag("h=ftp://x")


def test_round_trips_through_json_for_the_rest_api() -> None:
    cfg = _parse(method="PUT", events=["client.connected"], retry_on=[503, "4xx"], secret="k")
    assert cfg.method == "put"
    assert msgspec.json.decode(msgspec.json.encode(cfg), type=WebhookConfig) == cfg


def test_rest_api_decoding_validates_too() -> None:
    with pytest.raises(msgspec.ValidationError, match="overflow: 'nope'"):
        msgspec.json.decode(b'{"name": "a", "url": "http://h/", "overflow": "nope"}', type=WebhookConfig)


def test_retries_matches_statuses_and_classes() -> None:
    cfg = _parse(retry_on=[429, "5xx", 408])
    assert [s for s in (200, 400, 408, 429, 500, 503, 599) if cfg.retries(s)] == [408, 429, 500, 503, 599]


# -- validation messages name the path, the value and what was expected ----------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"overflow": "drop"}, "$.webhooks[0].overflow: 'drop' is invalid; expected one of drop_oldest, drop_new"),
        ({"ordering": "global"}, "$.webhooks[0].ordering: 'global' is invalid; expected one of none, per_client"),
        ({"payload_encoding": "hex"}, "$.webhooks[0].payload_encoding: 'hex' is invalid; expected one of plain"),
        ({"method": "PATCH"}, "$.webhooks[0].method: 'patch' is invalid; expected one of post, put, get, delete"),
        ({"name": "-bad"}, "$.webhooks[0].name: '-bad' is invalid; expected letters, digits"),
        ({"name": "a" * 255}, "$.webhooks[0].name: 'aaaa"),
        ({"url": "ftp://h/x"}, "$.webhooks[0].url: 'ftp://h/x' is invalid; expected http:// or https://"),
        ({"url": "http://${host}/x"}, "$.webhooks[0].url: 'http://${host}/x' is invalid; expected http://"),
        ({"url": "http://h:99999/"}, "$.webhooks[0].url: 'http://h:99999/' is invalid"),
        ({"url": "http://h/${a"}, "$.webhooks[0].url: 'http://h/${a' is invalid; expected a valid template"),
        ({"events": ["message.publsh"]}, "$.webhooks[0].events[0]: 'message.publsh' is invalid; expected one of"),
        ({"events": []}, "$.webhooks[0].events: [] is invalid"),
        ({"events": "some"}, "$.webhooks[0].events: 'some' is invalid"),
        ({"topics": ["a/#/b"]}, "$.webhooks[0].topics[0]: 'a/#/b' is invalid; expected a valid MQTT topic filter"),
        ({"topics": ["a", "b+"]}, "$.webhooks[0].topics[1]: 'b+' is invalid"),
        ({"pool_size": 0}, "$.webhooks[0].pool_size: 0 is invalid; expected an integer from 1 to 1024"),
        ({"pool_size": "8"}, "$.webhooks[0].pool_size: '8' is invalid: Expected `int`, got `str`"),
        ({"batch_size": 0}, "$.webhooks[0].batch_size: 0 is invalid"),
        ({"connect_timeout": "15 sec"}, "$.webhooks[0].connect_timeout: '15 sec' is invalid; expected a duration"),
        ({"request_timeout": 0}, "$.webhooks[0].request_timeout: 0 is invalid; expected a duration > 0"),
        ({"retry_backoff": "10s", "retry_backoff_max": "5s"}, "retry_backoff_max: '5s' is invalid; expected a"),
        ({"max_buffer_bytes": "12 parsecs"}, "$.webhooks[0].max_buffer_bytes: '12 parsecs' is invalid"),
        ({"max_buffer_bytes": 10}, "$.webhooks[0].max_buffer_bytes: 10 is invalid; expected at least 1KB"),
        ({"retry_on": [200]}, "$.webhooks[0].retry_on[0]: 200 is invalid; expected an HTTP status"),
        ({"retry_on": [429, "6xx"]}, "$.webhooks[0].retry_on[1]: '6xx' is invalid"),
        ({"headers": {"bad name": "v"}}, "$.webhooks[0].headers.bad name: 'bad name' is invalid"),
        ({"headers": {"x": "a\r\nb"}}, "$.webhooks[0].headers.x: 'a\\r\\nb' is invalid; expected a value without CR"),
        ({"body": '{"a": ${}}'}, "$.webhooks[0].body: '{\"a\": ${}}' is invalid; expected a valid template"),
        ({"secret": "whsec_!!!"}, "$.webhooks[0].secret: '<redacted>' is invalid"),
        ({"secret": ""}, "$.webhooks[0].secret: '<redacted>' is invalid"),
        ({"bogus": 1}, "$.webhooks[0].bogus: unknown setting; expected one of: name, url"),
        ({"enable": "yes"}, "$.webhooks[0].enable: 'yes' is invalid: Expected `bool`"),
        ({"topics": [1]}, "$.webhooks[0].topics[0]: 1 is invalid: Expected `str`"),
    ],
)
def test_errors_name_path_value_and_expectation(settings: dict[str, Any], expected: str) -> None:
    assert expected in _error(**settings)


def test_missing_required_field() -> None:
    with pytest.raises(ConfigError, match=r"^\$\.webhooks\[3\]\.url: missing"):
        parse_webhook({"name": "a"}, "$.webhooks[3]")


def test_templates_are_allowed_where_emqx_allows_them() -> None:
    cfg = _parse(url="https://h:8443/a/${clientid}?t=${topic}", headers={"authorization": "Bearer ${username}"})
    assert cfg.url.startswith("https://")


# -- durations and sizes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("15s", 15.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("0ms", 0.0),
        ("1.5s", 1.5),
        ("10 S", 10.0),
        (3, 3.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["15", "s", "-1s", "1d", "", "1 5s", -1, True])
def test_parse_duration_rejects(value: Any) -> None:
    with pytest.raises(FieldInvalid, match="expected a duration"):
        parse_duration(value, "connect_timeout")


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("256MB", 256 * 1024**2),
        ("64KB", 65536),
        ("1GB", 1024**3),
        ("512B", 512),
        ("100", 100),
        ("2mb", 2 * 1024**2),
        (4096, 4096),
    ],
)
def test_parse_size(value: Any, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["1TB", "MB", "-1KB", "1.5MB", -5, True, ""])
def test_parse_size_rejects(value: Any) -> None:
    with pytest.raises(FieldInvalid, match="expected a byte size"):
        parse_size(value, "max_buffer_bytes")


# -- templates ------------------------------------------------------------------------------

EVENT = {
    "event": "message.publish",
    "clientid": "c1",
    "qos": 1,
    "ratio": 0.5,
    "flags": {"retain": False, "dup": True},
    "payload": '{"a": {"b": [10, "x"]}, "q": "say \\"hi\\""}',
    "pub_props": {"User-Property": {"k": "v"}},
    "username": "undefined",
    "nothing": None,
    "metadata": {"rule_id": "w_WH_D"},
}


def _render(source: str, event: dict[str, Any] = EVENT) -> str:
    return compile_template(source).render(Context(data=event))


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("${clientid}", "c1"),
        ("q=${qos} r=${ratio}", "q=1 r=0.5"),
        ("${flags}", '{"retain":false,"dup":true}'),
        ("${flags.dup}", "true"),
        ("${pub_props.User-Property.k}", "v"),
        ("${payload.a.b}", '[10,"x"]'),
        ("${payload.a.b.1}", "x"),
        ("${payload.q}", 'say "hi"'),
        ("${payload.zz}", "undefined"),
        ("${missing}", "undefined"),
        ("${username}", "undefined"),
        ("${nothing}", "null"),
        ("${metadata.rule_id}", "w_WH_D"),
        ("$${clientid} is ${clientid}", "${clientid} is c1"),
        ("plain text", "plain text"),
        ("${ clientid }", "c1"),
        ("${json:clientid}", '"c1"'),
        ("${json:qos}", "1"),
        ("${json:missing}", '"undefined"'),
        ("${json:payload.a}", '{"b":[10,"x"]}'),
    ],
)
def test_render_follows_emqx(source: str, rendered: str) -> None:
    assert _render(source) == rendered


def test_whole_event_is_the_event_json() -> None:
    raw = b'{"metadata":{"rule_id":"w_WH_D"},"clientid":"c"}'
    assert compile_template("${.}").render(Context(raw)) == raw.decode()
    assert json.loads(_render("${.}")) == EVENT


def test_json_form_makes_a_valid_body_where_raw_form_breaks() -> None:
    event = {"payload": 'a "quoted" \\ value\n'}
    assert json.loads(_render('{"c": ${json:payload}}', event)) == {"c": event["payload"]}
    with pytest.raises(json.JSONDecodeError):
        json.loads(_render('{"c": "${payload}"}', event))  # the EMQX bug #3786


@given(st.text())
def test_json_form_is_always_valid_json(payload: str) -> None:
    event = {"payload": payload}
    assert json.loads(_render('{"c": ${json:payload}, "d": ${json:payload.x}}', event))["c"] == payload


@pytest.mark.parametrize("source", ["${a", "x ${a ${b}", "${}", "${a..b}", "${json:}", "${.a}"])
def test_bad_templates_are_refused(source: str) -> None:
    with pytest.raises(ValueError):
        compile_template(source)


def test_static_template_is_a_constant() -> None:
    assert compile_template("application/json").static == "application/json"
    assert compile_template("a ${b}").static is None


def test_payload_is_decoded_once_per_event() -> None:
    ctx = Context(data=dict(EVENT))
    tpl = compile_template("${payload.a.b.0}-${payload.q}")
    assert tpl.render(ctx) == '10-say "hi"'
    ctx.data["payload"] = "changed"  # cached decode: the second render reuses the first parse
    assert tpl.render(ctx) == '10-say "hi"'
