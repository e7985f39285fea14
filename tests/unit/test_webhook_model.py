"""Webhook config model (defaults, validation messages, durations, sizes) and template rendering."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqhook import schema
from mqhook.errors import ConfigError, MqhookError
from mqhook.events.catalogue import EVENT_NAMES
from mqhook.schema import ByteSize, Duration, decode_json, encode_json
from mqhook.webhook.model import (
    FieldInvalid,
    Method,
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
    assert cfg.events == "all" and cfg.event_set == frozenset(EVENT_NAMES)
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
    cfg = _parse(method="PUT", events=["client.connected"], retry_on=[503, "4xx"], secret="k", batch_time=2)
    assert cfg.method == "put"
    assert decode_json(encode_json(cfg), WebhookConfig) == cfg
    assert parse_webhook(msgspec.json.decode(encode_json(cfg))) == cfg
    # the plain msgspec calls work with the hooks
    data = msgspec.json.encode(cfg, enc_hook=schema.enc_hook)
    assert msgspec.json.decode(data, type=WebhookConfig, dec_hook=schema.dec_hook) == cfg


def test_rest_api_decoding_validates_too() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"Invalid enum value 'nope' - at `\$\.overflow`"):
        decode_json(b'{"name": "a", "url": "http://h/", "overflow": "nope"}', WebhookConfig)
    with pytest.raises(msgspec.ValidationError, match="url: 'ftp://h/' is invalid; expected http://"):
        decode_json(b'{"name": "a", "url": "ftp://h/"}', WebhookConfig)
    with pytest.raises(msgspec.ValidationError, match="expected a duration > 0"):
        decode_json(b'{"name": "a", "url": "http://h/", "request_timeout": "0s"}', WebhookConfig)
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int` >= 1 - at `\$\.pool_size`"):
        decode_json(b'{"name": "a", "url": "http://h/", "pool_size": 0}', WebhookConfig)


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
        ({"method": "PATCH"}, "$.webhooks[0].method: 'PATCH' is invalid; expected one of post, put, get, delete (any"),
        ({"method": 1}, "$.webhooks[0].method: 1 is invalid; expected `str`, got `int`"),
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
        ({"pool_size": "8"}, "$.webhooks[0].pool_size: '8' is invalid; expected `int`, got `str`"),
        ({"pool_size": 8.0}, "$.webhooks[0].pool_size: 8.0 is invalid; expected `int`, got `float`"),
        ({"pool_size": True}, "$.webhooks[0].pool_size: True is invalid; expected `int`, got `bool`"),
        ({"batch_size": 0}, "$.webhooks[0].batch_size: 0 is invalid"),
        ({"connect_timeout": "15 sec"}, "$.webhooks[0].connect_timeout: '15 sec' is invalid; expected a duration"),
        ({"request_timeout": 0}, "$.webhooks[0].request_timeout: 0 is invalid; expected a duration > 0"),
        (
            {"retry_backoff": "10s", "retry_backoff_max": "5s"},
            "$.webhooks[0].retry_backoff_max: '5s' is invalid; expected a duration of at least retry_backoff ('10s')",
        ),
        ({"max_buffer_bytes": "12 parsecs"}, "$.webhooks[0].max_buffer_bytes: '12 parsecs' is invalid"),
        ({"max_buffer_bytes": 10}, "$.webhooks[0].max_buffer_bytes: 10 is invalid; expected a byte size >= 1KB"),
        ({"max_buffer_bytes": 1.5}, "$.webhooks[0].max_buffer_bytes: 1.5 is invalid; expected a byte size >= 1KB such"),
        ({"connect_timeout": True}, "$.webhooks[0].connect_timeout: True is invalid; expected a duration > 0 such as"),
        ({"retry_backoff": [1]}, "$.webhooks[0].retry_backoff: [1] is invalid; expected a duration such as '15s'"),
        ({"retry_on": [200]}, "$.webhooks[0].retry_on[0]: 200 is invalid; expected an HTTP status"),
        ({"retry_on": [429, "6xx"]}, "$.webhooks[0].retry_on[1]: '6xx' is invalid"),
        ({"headers": {"bad name": "v"}}, "$.webhooks[0].headers.bad name: 'bad name' is invalid"),
        ({"headers": {"x": "a\r\nb"}}, "$.webhooks[0].headers.x: 'a\\r\\nb' is invalid; expected a value without CR"),
        ({"body": '{"a": ${}}'}, "$.webhooks[0].body: '{\"a\": ${}}' is invalid; expected a valid template"),
        ({"secret": "whsec_!!!"}, "$.webhooks[0].secret: '<redacted>' is invalid"),
        ({"secret": ""}, "$.webhooks[0].secret: '<redacted>' is invalid"),
        ({"bogus": 1}, "$.webhooks[0].bogus: unknown setting; expected one of: name, url"),
        ({"enable": "yes"}, "$.webhooks[0].enable: 'yes' is invalid; expected `bool`, got `str`"),
        ({"topics": [1]}, "$.webhooks[0].topics[0]: 1 is invalid; expected `str`, got `int`"),
        ({"headers": {"x": 1}}, "$.webhooks[0].headers[...]: invalid; expected `str`, got `int`"),
    ],
)
def test_errors_name_path_value_and_expectation(settings: dict[str, Any], expected: str) -> None:
    assert expected in _error(**settings)


# -- bounds and choices are msgspec constraints: each limit, just inside and just outside ---------

INT_BOUNDS = [
    ("pool_size", 1, 1024),
    ("max_retries", 0, 1000),
    ("inflight_window", 1, 100_000),
    ("batch_size", 1, 100_000),
    ("max_queued_events", 1, 1_000_000_000),
]


@pytest.mark.parametrize(("field", "low", "high"), INT_BOUNDS)
def test_integer_bounds(field: str, low: int, high: int) -> None:
    for ok in (low, high):
        assert getattr(_parse(**{field: ok}), field) == ok
    for bad in (low - 1, high + 1):
        assert _error(**{field: bad}) == f"{PATH}.{field}: {bad} is invalid; expected an integer from {low} to {high}"


@pytest.mark.parametrize(
    ("field", "inside", "outside", "expected"),
    [
        ("connect_timeout", ["1ms", 0.001, "15s"], ["0ms", 0, 0.0], "a duration > 0"),
        ("request_timeout", ["1ms", 0.001, "1h"], ["0s", 0], "a duration > 0"),
        ("batch_time", ["0ms", 0, "1h", "60m", 3600], ["3600.5s", "61m", 3601, "2h"], "a duration <= 1h"),
        ("max_buffer_bytes", ["1KB", 1024, "1GB"], ["1023B", 1023, "1023", 0], "a byte size >= 1KB"),
    ],
)
def test_duration_and_size_bounds(field: str, inside: list[Any], outside: list[Any], expected: str) -> None:
    for ok in inside:
        assert getattr(_parse(**{field: ok}), field).written == ok
    for bad in outside:
        assert _error(**{field: bad}) == f"{PATH}.{field}: {bad!r} is invalid; expected {expected}"


def test_retry_backoff_max_may_equal_retry_backoff() -> None:
    assert _parse(retry_backoff="2s", retry_backoff_max=2).retry_backoff_max_s == 2.0
    assert "retry_backoff_max: '1999ms' is invalid" in _error(retry_backoff="2s", retry_backoff_max="1999ms")


@pytest.mark.parametrize(
    ("field", "choices"),
    [
        ("payload_encoding", ["plain", "base64"]),
        ("overflow", ["drop_oldest", "drop_new", "backpressure"]),
        ("ordering", ["none", "per_client"]),
    ],
)
def test_literal_choices(field: str, choices: list[str]) -> None:
    for choice in choices:
        assert getattr(_parse(**{field: choice}), field) == choice
    for bad in (choices[0].upper(), choices[0] + "x", ""):
        assert _error(**{field: bad}) == f"{PATH}.{field}: {bad!r} is invalid; expected one of {', '.join(choices)}"


@pytest.mark.parametrize(
    ("written", "stored"),
    [("POST", "post"), ("Put", "put"), ("get", "get"), ("DELETE", "delete"), ("dElEtE", "delete")],
)
def test_method_is_accepted_in_any_case(written: str, stored: str) -> None:
    cfg = _parse(method=written)
    assert cfg.method == stored and cfg.method is Method(stored)
    assert cfg.method.upper() == stored.upper()  # what the request line sends
    assert msgspec.json.decode(encode_json(cfg))["method"] == stored
    assert decode_json(f'{{"name": "a", "url": "http://h/", "method": "{written}"}}', WebhookConfig).method == stored


def test_field_invalid_is_a_config_error_and_a_value_error() -> None:
    assert issubclass(FieldInvalid, ConfigError) and issubclass(FieldInvalid, MqhookError)
    assert issubclass(FieldInvalid, ValueError)  # msgspec wraps only ValueError/TypeError from __post_init__
    with pytest.raises(MqhookError):
        parse_webhook({"name": "a", "url": "ftp://h/"})


# -- durations and sizes are parsed once, when the config is built -------------------------------

DERIVED = ["connect_timeout_s", "request_timeout_s", "retry_backoff_s", "retry_backoff_max_s", "batch_time_s"]


def test_resolved_values_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _parse(connect_timeout="1.5s", request_timeout=7, retry_backoff="250ms", batch_time="2m")
    for prop in [*DERIVED, "max_buffer_bytes_n"]:
        assert getattr(cfg, prop) is getattr(cfg, prop), prop  # the stored value, not a fresh parse

    def no_parsing(cls: type, written: Any) -> None:
        raise AssertionError(f"{cls.__name__} {written!r} parsed again on access")

    monkeypatch.setattr(Duration, "_parse", classmethod(no_parsing))
    monkeypatch.setattr(ByteSize, "_parse", classmethod(no_parsing))
    monkeypatch.setattr(schema, "_DURATION_RE", None)
    monkeypatch.setattr(schema, "_SIZE_RE", None)
    values = [getattr(cfg, prop) for prop in DERIVED]
    assert values == [1.5, 7.0, 0.25, 30.0, 120.0]
    assert all(type(v) is float for v in values)
    assert cfg.max_buffer_bytes_n == 256 * 1024**2


def test_toml_in_json_out_gives_the_written_text_back(tmp_path) -> None:
    from mqhook import config

    path = tmp_path / "c.toml"
    path.write_text(
        '[[webhooks]]\nname = "a"\nurl = "http://127.0.0.1:5000/"\nconnect_timeout = "15s"\n'
        'request_timeout = 2.5\nretry_backoff = 1\nretry_backoff_max = "1m"\nbatch_time = "500ms"\n'
        'max_buffer_bytes = "64KB"\nmethod = "PUT"\n'
    )
    cfg = config.load(str(path), environ={})
    hook = cfg.webhooks[0]
    assert (hook.connect_timeout_s, hook.request_timeout_s, hook.retry_backoff_s) == (15.0, 2.5, 1.0)
    assert (hook.retry_backoff_max_s, hook.batch_time_s, hook.max_buffer_bytes_n) == (60.0, 0.5, 65536)
    out = msgspec.json.decode(encode_json(hook))
    assert {k: out[k] for k in ("connect_timeout", "request_timeout", "retry_backoff", "retry_backoff_max")} == {
        "connect_timeout": "15s",
        "request_timeout": 2.5,
        "retry_backoff": 1,
        "retry_backoff_max": "1m",
    }
    assert (out["batch_time"], out["max_buffer_bytes"], out["method"]) == ("500ms", "64KB", "put")
    assert (out["pool_size"], out["overflow"]) == (8, "drop_oldest")  # defaults are written out too
    assert decode_json(encode_json(cfg), config.Config) == cfg  # and the whole config round-trips
    assert encode_json(decode_json(encode_json(cfg), config.Config)) == encode_json(cfg)


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
