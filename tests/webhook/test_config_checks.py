"""What a webhook config is checked for before anything is sent: template variables the events
have, characters a URL may hold; and how variables are placed into the URL (one path segment,
or one query value), seen by a real receiver."""

from __future__ import annotations

from typing import Any

import pytest

from mqhook.errors import ConfigError
from mqhook.events.catalogue import EVENT_NAMES
from mqhook.webhook.request import path_segment, query_value

from .kit import Publish, Receiver, config, put, run, until, webhook

URL = "http://127.0.0.1:9/"


def _error(**settings: Any) -> str:
    with pytest.raises(ConfigError) as info:
        config(settings.pop("url", URL), **settings)
    return str(info.value)


# -- template variables ------------------------------------------------------------------------------

# Every path the README, EMQX's docs and these tests use; each must stay valid with events = "all".
VALID = [
    "${clientid}",
    "${username}",
    "${topic}",
    "${qos}",
    "${payload}",
    "${json:payload}",
    "${payload.x}",
    "${json:payload.a.b.0}",
    "${flags}",
    "${flags.dup}",
    "${flags.retain}",
    "${pub_props}",
    "${pub_props.User-Property.k}",
    "${pub_props.Content-Type}",
    "${client_attrs.tenant}",
    "${conn_props.User-Property}",
    "${puback_props.Reason-String}",
    "${metadata.rule_id}",
    "${metadata}",
    "${event}",
    "${timestamp}",
    "${node}",
    "${id}",
    "${peerhost}",
    "${peername}",
    "${publish_received_at}",
    "${from_clientid}",
    "${reason}",
    "${reason_code}",
    "${result}",
    "${authz_source}",
    "${.}",
    "${ clientid }",
    "$${literal}",
]


@pytest.mark.parametrize("variable", VALID)
def test_emqx_paths_stay_valid(variable: str) -> None:
    cfg = config(URL, body='{"v": "' + variable + '"}', headers={"x-v": variable})
    assert cfg.body is not None


@pytest.mark.parametrize(
    ("settings", "field", "variable"),
    [
        ({"body": '{"a": ${nosuchfield}}'}, "body", "${nosuchfield}"),
        ({"body": "${json:nosuchfield}"}, "body", "${nosuchfield}"),
        ({"headers": {"x-a": "${clientid} ${nope}"}}, "headers.x-a", "${nope}"),
        ({"url": URL + "${nope}"}, "url", "${nope}"),
        ({"url": URL + "?a=${nope}"}, "url", "${nope}"),
        ({"body": "${flags.sys}"}, "body", "${flags.sys}"),
        ({"body": "${clientid.x}"}, "body", "${clientid.x}"),  # only payload is read as JSON
        ({"body": "${metadata.x}"}, "body", "${metadata.x}"),
        ({"body": "${qos.0}"}, "body", "${qos.0}"),
    ],
)
def test_unknown_variables_are_refused_naming_field_and_variable(
    settings: dict[str, Any], field: str, variable: str
) -> None:
    text = _error(**settings)
    assert text.startswith(f"$.webhooks[0].{field}: "), text
    assert f"{variable} is not a field of any of the selected events" in text, text


def test_variables_depend_on_the_selected_events() -> None:
    # valid for none of the selected events: refused, naming the event
    text = _error(events=["client.connected"], body="${payload}")
    assert "${payload} is not a field of client.connected" in text and "clientid" in text, text
    text = _error(events=["client.connected", "client.disconnected"], body="${topic}")
    assert "${topic} is not a field of any of the selected events" in text, text
    # valid for some of them: accepted (the others render "undefined", as EMQX)
    assert config(URL, events=["client.connected", "message.publish"], body="${json:payload}").body
    assert config(URL, events=["client.disconnected"], body="${reason} ${disconn_props.Reason-String}").body
    assert config(URL + "${topic}", events=["session.subscribed"], body="${sub_props}").body
    for event in EVENT_NAMES:  # the envelope every event has
        assert config(URL, events=[event], body="${clientid} ${timestamp} ${node} ${event} ${metadata.rule_id}")


# -- characters of the URL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:9/a b", "' ' at character 21 is not one (percent-encode it: %20)"),
        ("http://127.0.0.1:9/a\tb", "'\\t' at character 21"),
        ('http://127.0.0.1:9/a"b', "'\"' at character 21"),
        ("http://127.0.0.1:9/<a>", "'<'"),
        ("http://127.0.0.1:9/a\\b", "'\\\\'"),
        ("http://127.0.0.1:9/a|b", "'|'"),
        ("http://127.0.0.1:9/a^b", "'^'"),
        ("http://127.0.0.1:9/a`b", "'`'"),
        ("http://127.0.0.1:9/a\x7fb", "'\\x7f'"),
        ("http://127.0.0.1:9/a%zzb", "the '%' at character 21 is not followed by two hex digits"),
        ("http://127.0.0.1:9/a%2", "the '%'"),
        ("http://127.0.0.1:9/$${x}", "'{'"),  # a literal '${' renders '{'
        ("http://127.0.0.1:9/a[0]", "'['"),
        ("http://127.0.0.1:9/a\u00a0b", "'\\xa0'"),
        ("http://127.0.0.1:9/a\u2028b", "'\\u2028'"),
        ("http://127.0.0.1:9/x?q=a b", "' '"),
        ("http://a b:9/", "' '"),
    ],
)
def test_characters_a_url_may_not_hold_are_refused_naming_url(url: str, words: str) -> None:
    text = _error(url=url)
    assert text.startswith(f"$.webhooks[0].url: {url!r} is invalid; expected only characters a URL may hold"), text
    assert words in text, text


def test_a_bad_character_in_the_password_is_not_described() -> None:
    text = _error(url="http://user:pa ss@127.0.0.1:9/")
    assert "'http://user:******@127.0.0.1:9/' is invalid" in text and "the password has one" in text, text
    assert "pa ss" not in text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/a%20b/%C3%A9",
        "http://127.0.0.1:9/é/日本",  # non-ASCII text is sent percent-encoded (an IRI)
        "http://[::1]:9/a",
        "http://127.0.0.1:9/a;b=c/d,e/~f/(g)/h!*'+$&=:@",
        "https://user:p%40ss@127.0.0.1:9/x?a=b&c=d/e?f",
        "http://127.0.0.1:9/hook/${clientid}?c=${clientid}&t=${json:topic}",
    ],
)
def test_urls_of_allowed_characters_are_accepted(url: str) -> None:
    assert config(url).url == url


# -- variables in the URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("../../../etc", "..%2F..%2F..%2Fetc"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("...", "..."),
        ("a/b", "a%2Fb"),
        ("a?b#c%d e", "a%3Fb%23c%25d%20e"),
        ("é", "%C3%A9"),
        ("a;b=c&d+e", "a%3Bb%3Dc%26d%2Be"),
        ("", ""),
        ("-._~Az09", "-._~Az09"),
    ],
)
def test_a_path_variable_is_one_segment(value: str, segment: str) -> None:
    assert path_segment(value) == segment


def test_a_query_variable_is_one_value() -> None:
    assert query_value("a&b=c+d #e/f?..") == "a%26b%3Dc%2Bd%20%23e%2Ff%3F.."
    assert query_value("..") == ".."


def test_client_ids_cannot_leave_the_configured_path() -> None:
    async def body() -> None:
        rx = await Receiver().start()
        wh = webhook(rx.url("/hook/${clientid}/x?c=${clientid}&t=${topic}"))
        wh.start()
        cases = {
            "../../../etc": "/hook/..%2F..%2F..%2Fetc/x?c=..%2F..%2F..%2Fetc&t=a%2Fb",
            "..": "/hook/%2E%2E/x?c=..&t=a%2Fb",
            "a b?c=1#f": "/hook/a%20b%3Fc%3D1%23f/x?c=a%20b%3Fc%3D1%23f&t=a%2Fb",
            "%2e%2e": "/hook/%252e%252e/x?c=%252e%252e&t=a%2Fb",
        }
        for clientid in cases:
            put(wh, Publish(clientid=clientid, topic="a/b"))
        await rx.wait_for(lambda: len(rx.requests) == len(cases))
        await until(lambda: wh.success == len(cases))
        got = {r.json()["clientid"]: r.raw_path for r in rx.requests}
        assert got == cases
        assert all(r.path.startswith("/hook/") for r in rx.requests)
        await wh.close(1.0)
        await rx.stop()

    run(body())
