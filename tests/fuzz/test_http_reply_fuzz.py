"""The webhook HTTP client's reply parser (``mqhook.webhook.http.HttpConnection``, httptools/llhttp)
under hostile replies, fed in reads on a fake transport. ``harness.check_http_reply`` holds the
invariants: nothing raised out of ``data_received`` or ``connection_lost``; every request ends with
a ``Response`` (status 100..999, body within ``reply_limit``) or a documented ``HttpError``
(``ResponseError``, ``ServerDisconnectedError``); a kept connection carries the next request."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from .harness import check_http_reply, http_one
from .strategies import NASTY, fuzz_settings, mutate

VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"RTSP/1.0", b"ICE/1.0", b"HTTP/1"])
STATUS = st.sampled_from(
    [b"200", b"204", b"100", b"101", b"103", b"304", b"500", b"999", b"099", b"1000", b"20", b"-1"]
)
HEADER = st.sampled_from(
    [
        b"Content-Length: 5",
        b"Content-Length: 0",
        b"Content-Length: 99999999999999999999",
        b"Content-Length: -1",
        b"Content-Length: 5, 5",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip, chunked",
        b"Transfer-Encoding: chunked, gzip",
        b"Connection: close",
        b"Connection: keep-alive",
        b"Connection: upgrade",
        b"Upgrade: h2c",
        b"Retry-After: 7",
        b"X-Folded: a\r\n b",
        b"X-Bin: \x00\x7f\xff",
        b"NoColon",
        b": empty-name",
    ]
)
BODY = st.sampled_from(
    [
        b"hello",
        b"",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"5;ext=1\r\nhello\r\n0\r\nTrailer: t\r\n\r\n",
        b"ffffffffffffffffff\r\nx",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"zz\r\n",
        b"x" * 100,
    ]
)


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    """One or two replies (an interim 1xx before, a second one after), with odd parts."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        eol = draw(st.sampled_from([b"\r\n", b"\n"]))
        line = draw(VERSIONS) + b" " + draw(STATUS) + b" " + draw(st.sampled_from([b"OK", b"", b"\xff"]))
        headers = draw(st.lists(HEADER, max_size=4))
        out += line + eol + b"".join(h + eol for h in headers) + eol + draw(BODY)
    return out


@fuzz_settings(400)
@given(data=st.data(), bodiless=st.booleans(), keep=st.booleans(), limit=st.sampled_from([65536, 64, 1]))
def test_structured_replies_mutated_in_any_reads(data: st.DataObject, bodiless: bool, keep: bool, limit: int) -> None:
    reply = data.draw(replies())
    if data.draw(st.booleans()):
        reply = data.draw(mutate(reply))
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(reply)))
        reply = reply[:pos] + data.draw(st.sampled_from(NASTY)) + reply[pos:]
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(reply) - 1)), max_size=8)))
    check_http_reply(reply, cuts, bodiless=bodiless, keep=keep, reply_limit=limit)


@fuzz_settings(400)
@given(buf=st.binary(max_size=300))
def test_raw_bytes(buf: bytes) -> None:
    """The atheris target's input format (options, cutting, reply), from hypothesis."""
    http_one(buf)


def test_a_header_block_over_the_limit_in_one_read_is_a_response_error() -> None:
    reply = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 70000 + b"\r\n\r\n"
    assert check_http_reply(reply, []) == ["ResponseError"]
    assert check_http_reply(reply, list(range(1000, 70000, 1000))) == ["ResponseError"]


def test_keep_alive_replies_back_to_back_each_serve_a_request() -> None:
    one = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    reply = one * 3
    cuts = [len(one), 2 * len(one)]  # each reply in its own read, as a server answers one request at a time
    assert check_http_reply(reply, cuts) == [(200, b"ok")] * 3 + ["ServerDisconnectedError"]
