"""The durable spool's format: records, replay after a restart, acknowledgements, compaction, torn
writes and checksum mismatches, and the dead-letter store (no broker, no sockets)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mqhook.webhook.deadletter import DeadLetters
from mqhook.webhook.spool import HEAD, Spool, SpoolLocked, SpoolQueue, read_records


def _queue(spool: Spool, max_events: int = 1000, max_bytes: int = 1 << 20, overflow: str = "drop_new") -> SpoolQueue:
    return SpoolQueue(spool, max_events, max_bytes, overflow, {"queue_full": 0})


def _close(spool: Spool) -> None:
    asyncio.run(spool.close())


def test_events_survive_a_restart_in_order_and_acked_ones_do_not(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync="never")
    q = _queue(s)
    for i in range(10):
        assert q.put(b'{"n":%d}' % i, f"c{i % 3}")
    batch = q.pop_batch(4)
    q.done(batch[:3])  # the 4th was popped but not done: it is replayed
    _close(s)
    s2 = Spool(tmp_path, fsync="never")
    q2 = _queue(s2)
    assert [d for d, _ in q2.pop_batch(100)] == [b'{"n":%d}' % i for i in range(3, 10)]
    assert s2.ident == s.ident
    _close(s2)


def test_out_of_order_acks_move_the_position_over_a_contiguous_prefix_only(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync="never")
    q = _queue(s)
    for i in range(6):
        q.put(b"e%d" % i, "k")
    a, b = q.pop_batch(3), q.pop_batch(3)
    q.done(b)
    assert s.acked == 0
    q.done(a)
    assert s.acked == 6
    _close(s)
    assert len(_queue(Spool(tmp_path, fsync="never"))) == 0


def test_a_record_cut_in_half_is_reported_and_the_rest_replayed(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync="never")
    q = _queue(s)
    for i in range(5):
        q.put(b"x" * 100 + b"%d" % i, "k")
    _close(s)
    seg = next(tmp_path.glob("seg-*.log"))
    raw = seg.read_bytes()
    records, corrupt, end = read_records(raw)
    assert len(records) == 5 and corrupt == 0
    seg.write_bytes(raw[: end - 50])  # the last record torn
    s2 = Spool(tmp_path, fsync="never")
    assert s2.corrupt == 1
    assert [d[-1:] for d, _ in _queue(s2).pop_batch(10)] == [b"0", b"1", b"2", b"3"]
    _close(s2)


def test_a_checksum_mismatch_skips_that_record_only(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync="never")
    q = _queue(s)
    for i in range(3):
        q.put(b"event-%d" % i, "k")
    _close(s)
    seg = next(tmp_path.glob("seg-*.log"))
    raw = bytearray(seg.read_bytes())
    first_len = HEAD.unpack_from(raw, 0)[1]
    raw[HEAD.size + first_len + HEAD.size + 12] ^= 0xFF  # a byte inside the second record
    seg.write_bytes(bytes(raw))
    s2 = Spool(tmp_path, fsync="never")
    assert s2.corrupt == 1
    assert [d for d, _ in _queue(s2).pop_batch(10)] == [b"event-0", b"event-2"]
    _close(s2)


def test_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    s = Spool(tmp_path, segment_bytes=1 << 20, fsync="interval", fsync_interval=0.001)
    q = _queue(s, max_events=100_000, max_bytes=64 << 20)

    async def run() -> None:
        s.start(asyncio.get_running_loop())
        for _ in range(3000):
            q.put(b"y" * 1000, "k")
        assert len(list(tmp_path.glob("seg-*.log"))) >= 3
        q.done(q.pop_batch(3000))
        await s.commit()
        await s.close()

    asyncio.run(run())
    assert len(list(tmp_path.glob("seg-*.log"))) == 1  # only the head is kept
    assert len(_queue(Spool(tmp_path))) == 0


def test_the_bound_applies_the_overflow_policy(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync="never")
    dropped = {"queue_full": 0}
    q = SpoolQueue(s, 3, 1 << 20, "drop_oldest", dropped)
    for i in range(5):
        assert q.put(b"%d" % i, "k")
    assert dropped["queue_full"] == 2 and [d for d, _ in q.pop_batch(10)] == [b"2", b"3", b"4"]
    assert s.acked == 2  # the evicted events are given up for good
    _close(s)


def test_one_process_at_a_time(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    with pytest.raises(SpoolLocked):
        Spool(tmp_path)
    _close(s)


def test_fsync_always_commits_in_the_loop_turn(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync="always")
    q = _queue(s)

    async def run() -> None:
        s.start(asyncio.get_running_loop())
        q.put(b"a", "k")
        seg = s._segments[-1]
        assert seg.dirty
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not seg.dirty
        await s.close()

    asyncio.run(run())


def test_dead_letters_add_select_take_and_bound(tmp_path: Path) -> None:
    d = DeadLetters(tmp_path, max_bytes=400)
    assert d.add([(b'{"a":1}', "c1"), (b'{"a":2}', "c2")], "failed", 100.0) == 2
    assert d.add([(b'{"a":3}', "c3")], "expired", 200.0) == 1
    assert d.add([(b"z" * 500, "c4")], "expired", 300.0) == 0  # over the bound: refused
    assert [x[2] for x in d.select(since=150)] == ["c3"]
    assert [x[2] for x in d.take(until=150)] == ["c1", "c2"]
    assert d.count == 1
    d.close()
    again = DeadLetters(tmp_path, max_bytes=400)
    assert [(x[1], x[3]) for x in again.select()] == [("expired", b'{"a":3}')]
    assert DeadLetters.locked(tmp_path)
    again.close()
    assert not DeadLetters.locked(tmp_path)
    os.sync()


def test_a_corrupt_record_in_the_middle_does_not_hold_the_ack_position_back(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync="never")
    q = _queue(s)
    for i in range(3):
        q.put(b"event-%d" % i, "k")
    _close(s)
    seg = next(tmp_path.glob("seg-*.log"))
    raw = bytearray(seg.read_bytes())
    first_len = HEAD.unpack_from(raw, 0)[1]
    raw[HEAD.size + first_len + HEAD.size + 12] ^= 0xFF
    seg.write_bytes(bytes(raw))
    s2 = Spool(tmp_path, fsync="never")
    q2 = _queue(s2)
    q2.done(q2.pop_batch(10))
    assert s2.acked == 3  # over the lost position 1 too
    _close(s2)
    s3 = Spool(tmp_path, fsync="never")
    assert len(_queue(s3)) == 0 and s3.corrupt == 0  # the wholly acknowledged segment was deleted
    _close(s3)


def test_an_empty_segment_left_by_a_crash_does_not_block_the_next_one(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync="never")
    _close(s)
    (tmp_path / "seg-0000000000000000.log").write_bytes(b"\0" * 4096)
    s2 = Spool(tmp_path, fsync="never")
    q = _queue(s2)
    assert q.put(b"a", "k")
    _close(s2)
    assert [d for d, _ in _queue(Spool(tmp_path)).pop_batch(5)] == [b"a"]
