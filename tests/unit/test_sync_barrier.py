"""fsync = "always": no byte acknowledging an event leaves the transport before the event's sync.

A durable webhook's spool holds the broker's ``SyncBarrier`` from the first event of a loop turn
until its commit; the MQTT transport flushes nothing meanwhile. The transport here is a recorder of
what would go to the socket (the kernel's side); everything else is the real protocol and spool.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mqhook.broker.broker import Broker
from mqhook.broker.flow import SyncBarrier
from mqhook.broker.settings import MqttConfig
from mqhook.broker.stats import Stats
from mqhook.server.tcp import MqttProtocol
from mqhook.webhook.spool import Spool, SpoolQueue

PUBACK = b"\x40\x02\x00\x01"


class Recorder:
    """The socket's side of a transport: what was written, and whether the spool was synced then."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.writes: list[tuple[bytes, bool]] = []

    def write(self, data: bytes) -> None:
        self.writes.append((data, not any(seg.dirty for seg in self.spool._segments)))

    def is_closing(self) -> bool:
        return False


def test_the_barrier_runs_waiting_output_in_order_once_every_commit_is_done() -> None:
    b = SyncBarrier()
    ran: list[int] = []
    b.hold()
    b.hold()
    b.wait(lambda: ran.append(1))
    b.wait(lambda: ran.append(2))
    b.release()
    assert ran == [] and b.pending == 1
    b.release()
    assert ran == [1, 2] and b.pending == 0


def _setup(tmp_path: Path, fsync: str) -> tuple[Spool, SpoolQueue, MqttProtocol, Recorder]:
    loop = asyncio.get_running_loop()
    broker = Broker(MqttConfig(), Stats(), loop)
    spool = Spool(tmp_path, fsync=fsync)
    spool.barrier = broker.barrier
    spool.start(loop)
    queue = SpoolQueue(spool, 1000, 1 << 20, "drop_new", {"queue_full": 0})
    proto = MqttProtocol(broker, loop)
    recorder = Recorder(spool)
    proto.transport = recorder  # type: ignore[assignment]
    return spool, queue, proto, recorder


def test_a_puback_leaves_only_after_the_sync_of_its_event(tmp_path: Path) -> None:
    async def run() -> None:
        spool, queue, proto, sent = _setup(tmp_path, "always")
        queue.put(b'{"event":"message.publish"}', "c1")  # what the router does during the PUBLISH
        proto.write(PUBACK)  # then the PUBACK ...
        proto._flush()  # ... which data_received flushes at once
        assert sent.writes == []  # held: the event is not synced yet
        await asyncio.sleep(0)  # the loop turn's callbacks: the commit, then the waiting flush
        await asyncio.sleep(0)
        assert sent.writes == [(PUBACK, True)]
        proto.write(PUBACK)  # nothing put since: output is not held
        proto._flush()
        assert sent.writes[-1] == (PUBACK, True) and len(sent.writes) == 2
        await spool.close()

    asyncio.run(run())


def test_other_fsync_modes_do_not_hold_output(tmp_path: Path) -> None:
    async def run() -> None:
        spool, queue, proto, sent = _setup(tmp_path, "interval")
        queue.put(b'{"event":"message.publish"}', "c1")
        proto.write(PUBACK)
        proto._flush()
        assert [data for data, _ in sent.writes] == [PUBACK]  # at once (the sync comes within 10 ms)
        await spool.close()

    asyncio.run(run())


def test_a_closing_spool_lets_the_output_go(tmp_path: Path) -> None:
    async def run() -> None:
        spool, queue, proto, sent = _setup(tmp_path, "always")
        queue.put(b"{}", "c1")
        proto.write(PUBACK)
        proto._flush()
        assert sent.writes == []
        spool.close_files()  # never stuck behind a spool that is gone
        await asyncio.sleep(0)
        assert [data for data, _ in sent.writes] == [PUBACK]

    asyncio.run(run())
