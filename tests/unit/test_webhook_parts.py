"""Socket-free parts of webhook delivery: encoding, signing, the queue, Retry-After and backoff."""

from __future__ import annotations

import email.utils
import json

import pytest

from mqhook.webhook.encode import meta_prefix, splice
from mqhook.webhook.model import parse_webhook
from mqhook.webhook.queue import MemoryQueue
from mqhook.webhook.request import Outcome, RequestBuilder, backoff_delay, parse_retry_after
from mqhook.webhook.signing import new_message_id, sign

EVENT = b'{"event":"message.publish","clientid":"c","payload":"q\\"","timestamp":1}'


# -- encoding -----------------------------------------------------------------------------------


def test_splice_adds_metadata_first_and_keeps_every_field() -> None:
    body = splice(EVENT, meta_prefix("w_WH_D"))
    assert body.startswith(b'{"metadata":{"rule_id":"w_WH_D"},')
    assert json.loads(body) == {
        "event": "message.publish",
        "clientid": "c",
        "payload": 'q"',
        "timestamp": 1,
        "metadata": {"rule_id": "w_WH_D"},
    }


def test_a_batch_is_an_array_of_events_each_with_the_metadata() -> None:
    other = EVENT.replace(b'"c"', b'"b"')
    cfg = parse_webhook({"name": "odd-name", "url": "http://127.0.0.1:1/", "batch_size": 10})
    data = json.loads(RequestBuilder(cfg).build([(EVENT, "c"), (other, "b")]).body or b"")
    assert [e["clientid"] for e in data] == ["c", "b"]
    assert all(e["metadata"] == {"rule_id": "odd-name_WH_D"} for e in data)


def test_splice_handles_an_empty_object() -> None:
    assert json.loads(splice(b"{}", meta_prefix("r"))) == {"metadata": {"rule_id": "r"}}


# -- signing ------------------------------------------------------------------------------------


def test_standard_webhooks_published_vector() -> None:
    headers = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


def test_message_ids_are_unique() -> None:
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("msg_") for i in ids)


# -- queue --------------------------------------------------------------------------------------


def _queue(overflow: str = "drop_oldest", events: int = 10, size: int = 10_000) -> tuple[MemoryQueue, dict[str, int]]:
    dropped = {"queue_full": 0}
    return MemoryQueue(events, size, overflow, dropped), dropped


def test_queue_counts_events_and_bytes() -> None:
    q, _ = _queue()
    q.put(b"abc", "a")
    q.put(b"de", "b")
    assert len(q) == 2 and q.nbytes == 5
    batch = q.pop_batch(10)
    assert batch == [(b"abc", "a"), (b"de", "b")] and len(q) == 0 and q.nbytes == 0
    q.unpop(batch[1:])
    assert len(q) == 1 and q.nbytes == 2
    assert q.clear() == 1 and q.nbytes == 0


def test_pop_batch_skips_busy_keys_and_keeps_their_order() -> None:
    q, _ = _queue()
    for data, key in [(b"a1", "a"), (b"b1", "b"), (b"a2", "a"), (b"c1", "c"), (b"b2", "b")]:
        q.put(data, key)
    assert [d for d, _ in q.pop_batch(10, {"a"})] == [b"b1", b"c1", b"b2"]
    assert [d for d, _ in q.pop_batch(10, {"x"})] == [b"a1", b"a2"]
    assert q.pop_batch(10, {"a"}) == []


@pytest.mark.parametrize(("overflow", "kept"), [("drop_oldest", [5, 6, 7]), ("drop_new", [0, 1, 2])])
def test_overflow_policies(overflow: str, kept: list[int]) -> None:
    q, dropped = _queue(overflow, events=3)
    for i in range(8):
        q.put(bytes([i]), "k")
    assert [d[0] for d, _ in q.pop_batch(10)] == kept and dropped["queue_full"] == 5


def test_water_marks() -> None:
    q, _ = _queue("backpressure", events=10)
    for i in range(8):
        assert not q.over_high_water
        q.put(b"x", str(i))
    assert q.over_high_water and not q.under_low_water
    q.pop_batch(2)
    assert not q.under_low_water  # 6 of 10 left: still above the 50% low-water mark
    q.pop_batch(1)
    assert q.under_low_water


# -- retry timing -------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    when = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(when, now=1_000_000) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(999_000, usegmt=True), now=1_000_000) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("-3") is None


def _outcome(status: int | None, retry_after: str | None = None) -> Outcome:
    out = Outcome()
    out.status = status
    out.retry_after = retry_after
    return out


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    for attempt, cap in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (500, 5.0)]:
        delays = [backoff_delay(attempt, 1.0, 5.0) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays) and max(delays) > cap * 0.5


def test_retry_after_overrides_backoff_on_429_and_503_only() -> None:
    assert backoff_delay(0, 0.0, 30.0, _outcome(503, "4")) == 4.0
    assert backoff_delay(0, 0.0, 30.0, _outcome(429, "400")) == 30.0
    assert backoff_delay(0, 0.0, 30.0, _outcome(500, "4")) == 0.0
    assert backoff_delay(0, 0.0, 30.0, _outcome(None)) == 0.0


@pytest.mark.parametrize("headers", [{}, {"x-client": "${clientid}"}], ids=["static", "templated"])
def test_batch_bodies_are_the_same_on_the_fast_and_the_template_path(headers: dict[str, str]) -> None:
    raws = [EVENT, EVENT.replace(b'"c"', b'"c"'), EVENT.replace(b"1}", b"2}")]
    cfg = parse_webhook({"name": "w", "url": "http://127.0.0.1:1/", "batch_size": 10, "headers": headers})
    req = RequestBuilder(cfg).build([(raw, "c") for raw in raws])
    # Written out by hand: "[" + each event with the metadata spliced after its "{", comma-joined + "]".
    expected = b"[" + b",".join(b'{"metadata":{"rule_id":"w_WH_D"},' + raw[1:] for raw in raws) + b"]"
    assert req.count == 3 and req.body == expected
    one = parse_webhook({"name": "w", "url": "http://127.0.0.1:1/", "headers": headers})
    assert RequestBuilder(one).build([(EVENT, "c")]).body == splice(EVENT, meta_prefix("w_WH_D"))
