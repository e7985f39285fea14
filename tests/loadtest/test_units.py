"""Sans-I/O parts of the load-test harness: packets, histogram, bitmaps, the receive loop, merging."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from typing import Any

import pytest

from mqhook.loadtest import packets as pk
from mqhook.loadtest.client import Counters, MqttClient
from mqhook.loadtest.merge import merge_pubsub, sink_figures, summarize
from mqhook.loadtest.scenario import Scenario, assignments
from mqhook.loadtest.stats import (
    N_BUCKETS,
    Histogram,
    SeqTracker,
    bitmap_union,
    bucket_bounds,
    bucket_index,
    loss_and_dups,
)

# -- packets -----------------------------------------------------------------------------------


def test_payload_round_trip_plain_and_base64() -> None:
    payload = pk.encode_payload(3, 12345, 1_700_000_000_123_456_789, 64)
    assert len(payload) == 64
    assert payload.isascii()
    assert pk.decode_payload(payload) == (3, 12345, 1_700_000_000_123_456_789)
    text = payload.decode()
    assert pk.decode_event_payload(text) == (3, 12345, 1_700_000_000_123_456_789)
    b64 = base64.b64encode(payload).decode()
    assert pk.decode_event_payload(b64) == (3, 12345, 1_700_000_000_123_456_789)
    assert pk.decode_event_payload(b64, "base64") == (3, 12345, 1_700_000_000_123_456_789)
    assert pk.decode_event_payload("hello") is None
    assert pk.decode_payload(b"x" * 40) is None


def test_payload_minimum_size() -> None:
    with pytest.raises(ValueError):
        pk.encode_payload(0, 0, 0, 31)
    with pytest.raises(ValueError):
        pk.PublishTemplate("t", 0, 31)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_chunk_is_the_same_bytes_as_single_packets(qos: int) -> None:
    tpl = pk.PublishTemplate("bench/x/7", qos, 48, pub=7)
    t_ns = time.time_ns()
    data = tpl.chunk(250, 6, t_ns)
    expect = b"".join(
        pk.publish("bench/x/7", pk.encode_payload(7, s, t_ns, 48), qos, pk.packet_id(s)) for s in range(250, 256)
    )
    assert data == expect
    assert len(data) == 6 * tpl.frame_len
    with pytest.raises(ValueError):
        tpl.chunk(250, 7, t_ns)  # would cross a block of 256


def test_packet_ids_stay_clear_of_the_spare_range() -> None:
    ids = {pk.packet_id(s) for s in range(65280)}
    assert len(ids) == 65280
    assert min(ids) == 256 and max(ids) == 65535


def test_varint() -> None:
    assert pk.varint(0) == b"\x00"
    assert pk.varint(127) == b"\x7f"
    assert pk.varint(128) == b"\x80\x01"
    assert pk.varint(268_435_455) == b"\xff\xff\xff\x7f"


# -- histogram -----------------------------------------------------------------------------------


def test_buckets_cover_every_value_once() -> None:
    prev_hi = 0
    for idx in range(N_BUCKETS):
        lo, hi = bucket_bounds(idx)
        assert lo == prev_hi
        assert bucket_index(lo) == idx and bucket_index(hi - 1) == idx
        prev_hi = hi
    for us in (0, 1, 127, 128, 129, 1000, 123_456, 10**9):
        lo, hi = bucket_bounds(bucket_index(us))
        assert lo <= us < hi
        assert (hi - lo) / max(lo, 1) <= 1 / 64 or hi - lo == 1


def test_percentiles() -> None:
    h = Histogram()
    for us in range(1, 101):
        h.record(us)
    assert h.total == 100
    assert h.percentile(50) == 50
    assert h.percentile(99) == 99
    assert h.percentile(100) == 100
    s = h.summary_ms()
    assert s["count"] == 100
    assert s["p50"] == 0.05
    assert Histogram().percentile(50) is None
    h2 = Histogram()
    h2.record(5_000_000)  # 5 s
    assert abs(h2.percentile(50) - 5_000_000) / 5_000_000 < 0.02
    h.merge(h2.counts)
    assert h.total == 101


# -- bitmaps and loss ----------------------------------------------------------------------------


def test_seq_tracker() -> None:
    t = SeqTracker(initial=4)
    for seq in (0, 1, 2, 5, 3, 3, 100):
        t.add(0, seq)
    t.add(1, 0)
    assert t.distinct == 7 and t.dups == 1 and t.reordered == 2
    assert t.add(0, -1) is False and t.foreign == 1


def test_loss_and_dups_single_and_shared() -> None:
    a = bytearray(10)
    b = bytearray(10)
    a[0:5] = b"\x01" * 5
    b[4:9] = b"\x01" * 5  # 4 reached both receivers; 9 reached none
    assert bitmap_union([a, b]) == b"\x01" * 9 + b"\x00"
    shared = loss_and_dups({0: 10}, [{0: a}, {0: b}])
    assert shared == {"expected": 10, "distinct": 9, "lost": 1, "cross_dups": 1, "unexpected": 0}
    alone = loss_and_dups({0: 10, 1: 3}, [{0: a}])
    assert alone["lost"] == 5 + 3 and alone["cross_dups"] == 0
    extra = bytearray(12)
    extra[11] = 1
    assert loss_and_dups({0: 10}, [{0: extra, 5: bytearray(b"\x01")}])["unexpected"] == 2


# -- the receive loop, without sockets -------------------------------------------------------------


class _FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return False


def _subscriber(expect: int) -> tuple[MqttClient, list[int], Counters, _FakeTransport]:
    c = MqttClient("sub")
    hist = [0] * N_BUCKETS
    counters = Counters(bytearray(Counters.size(1)), 1)
    c.as_subscriber(hist, [], counters, 0, expect)
    transport = _FakeTransport()
    c.transport = transport  # type: ignore[assignment]
    c.t0 = time.monotonic()
    return c, hist, counters, transport


def _frames(qos: int, pubs: int, per_pub: int, chunk: int) -> list[list[bytes]]:
    out = []
    for p in range(pubs):
        tpl = pk.PublishTemplate(f"t/{p}", qos, 40, pub=p)
        frames: list[bytes] = []
        seq = 0
        while seq < per_pub:
            k = min(chunk, pk.BLOCK - (seq & 0xFF), per_pub - seq)
            data = tpl.chunk(seq, k, time.time_ns())
            frames += [data[i : i + tpl.frame_len] for i in range(0, len(data), tpl.frame_len)]
            seq += k
        out.append(frames)
    return out


def _feed(c: MqttClient, stream: bytes, rng: random.Random) -> None:
    p = 0
    while p < len(stream):
        n = rng.randint(1, 3000)
        c.data_received(stream[p : p + n])
        p += n


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("interleave", [False, True])
def test_receive_loop_counts_exactly(qos: int, interleave: bool) -> None:
    async def body() -> None:
        rng = random.Random(qos * 10 + interleave)
        frames = _frames(qos, 3, 700, 100)
        if interleave:
            order = [f for trio in zip(*frames, strict=True) for f in trio]
        else:
            order = [f for fs in frames for f in fs]
        c, hist, counters, transport = _subscriber(700)
        _feed(c, b"".join(order), rng)
        assert c.received == c.distinct == 2100
        assert c.dups == c.reordered == c.foreign == 0
        assert sum(hist) == 2100
        assert counters.total(Counters.DISTINCT) == 2100 and counters.total(Counters.RECEIVED) == 2100
        acks = b"".join(transport.out)
        assert len(acks) == (2100 * 4 if qos else 0)  # one PUBACK / PUBREC per message
        if qos == 1:
            assert acks[:1] == b"\x40"
        if qos == 2:
            assert acks[:1] == b"\x50"

    asyncio.run(body())


def test_receive_loop_finds_a_gap_a_duplicate_and_reordering() -> None:
    async def body() -> None:
        (frames,) = _frames(0, 1, 300, 100)
        stream = frames[:10] + frames[11:50] + [frames[20]] + frames[50:] + [frames[5]]  # 10 lost, 20 and 5 twice
        c, _hist, _counters, _t = _subscriber(300)
        _feed(c, b"".join(stream), random.Random(1))
        assert c.received == 301
        assert c.distinct == 299
        assert c.dups == 2
        assert c.reordered == 2
        bitmaps = c.subscriber_result()["bitmaps"]
        assert loss_and_dups({0: 300}, [bitmaps])["lost"] == 1

    asyncio.run(body())


def test_receive_loop_answers_pubrel_and_frees_acked_ids() -> None:
    async def body() -> None:
        c, _hist, _counters, transport = _subscriber(10)
        c.data_received(pk.ack(pk.PUBREL_HEAD, 300))
        assert transport.out == [b"\x70\x02\x01\x2c"]
        assert c.take_pids(400, 3) and c.inflight == 3
        assert not c.take_pids(401, 1)
        c.data_received(pk.ack(b"\x40\x02", 400) + pk.ack(b"\x70\x02", 401) + pk.ack(b"\x40\x02", 999))
        assert c.inflight == 1 and c.acked == 2 and c.unexpected_acks == 1
        c.data_received(pk.ack(pk.PUBREC_HEAD, 402))
        assert transport.out[-1] == b"\x62\x02\x01\x92"  # PUBREL 402

    asyncio.run(body())


# -- scenario and merging --------------------------------------------------------------------------


def test_scenario_validation() -> None:
    Scenario().validate()
    for bad in (
        {"qos": 3},
        {"payload": 16},
        {"topology": "1:1", "pubs": 2, "subs": 3},
        {"count": None, "duration": None},
        {"mode": "nope"},
        {"procs": 0},
    ):
        with pytest.raises(ValueError):
            Scenario(**bad).validate()  # type: ignore[arg-type]
    assert Scenario(qos=0).effective_window == 10_000
    assert Scenario(qos=1).effective_window == 1_000
    assert Scenario(window=0).effective_window == 0
    assert Scenario(count=10, pubs=3).pub_counts() == [4, 3, 3]
    assert Scenario(subs=3, topology="fan-out").fan == 3
    assert Scenario(subs=3, topology="shared").fan == 1
    assert Scenario(topology="shared").sub_filter("tok", 0) == "$share/bench/mqhook-bench/tok/+"


def test_assignments_split_clients_and_connections() -> None:
    sc = Scenario(pubs=4, subs=1, procs=2, connections=5)
    a = assignments(sc, "tok")
    assert [x.subs for x in a] == [(0,), ()]
    assert sorted(p for x in a for p in x.pubs) == [0, 1, 2, 3]
    assert [len(x.pubs) for x in a] == [2, 2]
    assert [(x.conn_start, x.conn_stop) for x in a] == [(0, 2), (2, 5)]


def _sub(index: int, bitmaps: dict[int, bytes], received: int, dups: int = 0) -> dict[str, Any]:
    return {
        "name": f"sub{index}",
        "index": index,
        "received": received,
        "distinct": received - dups,
        "dups": dups,
        "reordered": 0,
        "foreign": 0,
        "t_first": 1.0,
        "t_last": 2.0,
        "bitmaps": bitmaps,
        "lost_reason": None,
    }


def test_merge_shared_group_counts_cross_duplicates() -> None:
    sc = Scenario(pubs=1, subs=2, topology="shared", count=4)
    pubs = [
        {"pub": 0, "sent": 4, "packets": 4, "acked": 0, "unacked": 0, "t_last": 1.5, "stalled": False, "error": None}
    ]
    finals = [
        {
            "subs": [_sub(0, {0: b"\x01\x01\x01"}, 3), _sub(1, {0: b"\x00\x00\x01"}, 1)],
            "hist": [0] * N_BUCKETS,
            "timeline_in": [4],
            "timeline_out": [4],
            "cpu_s": 0.1,
            "errors": [],
        }
    ]
    res = merge_pubsub(sc, pubs, finals, 1.0, {"cpu_s": 1.0, "rss_kb": 10}, {"cpu_s": 1.5, "rss_kb": 12})
    assert (res["expected"], res["distinct"], res["lost"], res["dups"]) == (4, 3, 1, 1)
    assert res["broker_cpu_s"] == 0.5 and res["broker_cpu_s_per_million"] == 125000.0
    summary = summarize([{**res, "broker": "a"}, {**res, "broker": "b", "msgs_in_per_s": 4.0}], ["a", "b"], "pubsub")
    assert summary["ratio"]["msgs_in_per_s"] == 2.0


def test_sink_figures_rates_over_first_publish_to_last_event() -> None:
    # 5 events, one a duplicate: 4 distinct messages of publisher 0, the last event 2 s after the first publish
    snap = {"events": 5, "tracked": 5, "per_publisher": {0: 4}, "t_last": 3.0, "hist": [0] * N_BUCKETS}
    out = sink_figures(snap, {0: 4}, 1.0)
    assert (out["expected"], out["received"], out["lost"]) == (4, 4, 0)
    assert out["span_s"] == 2.0 and out["events_per_s"] == 2.5 and out["distinct_per_s"] == 2.0
    assert "per_publisher" not in out and "hist" not in out
    assert sink_figures({**snap, "per_publisher": {0: 3}}, {0: 4}, 1.0)["lost"] == 1


def test_sink_figures_when_no_event_is_expected() -> None:
    quiet = sink_figures({"events": 0, "tracked": 0, "per_publisher": {}, "t_last": 0.0}, {0: 4}, 1.0, expect=False)
    assert (quiet["expected"], quiet["lost"], quiet["received"]) == (0, 0, 0)
    assert quiet["span_s"] is None and quiet["events_per_s"] is None and quiet["distinct_per_s"] is None
