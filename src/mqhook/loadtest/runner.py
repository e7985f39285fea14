"""Orchestration of ``mqhook bench``: workers, the run's phases, alternation, progress.

One run = fresh connections and topics (a new token) against one broker:

1. the workers connect (subscribers subscribe first; every worker is set up before anyone
   publishes), and the broker's CPU time and RSS are read from /proc;
2. all publishers start at the same monotonic instant and stop at their count or duration;
3. the drain: wait until every expected delivery arrived, or nothing new arrived for ``stall``
   seconds (then the rest counts as lost), and, with a sink, until it got every event;
4. /proc again, the workers disconnect and hand over their bitmaps, histograms and timelines,
   which ``merge`` turns into the run's figures.

With ``--against`` the runs alternate (target, other, target, other, ...) so slow drift of a
shared machine hits both alike; ``merge.summarize`` reports medians and ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, TextIO

from mqhook.loadtest import merge
from mqhook.loadtest.brokers import settings_differ
from mqhook.loadtest.client import Counters, ProtocolFailure
from mqhook.loadtest.rpc import Remote, RemoteError
from mqhook.loadtest.scenario import Scenario, assignments
from mqhook.loadtest.stats import proc_snapshot
from mqhook.loadtest.worker import Worker

SETUP_TIMEOUT = 60.0
SINK_SETTLE = 0.5  # seconds a sink that expects no events is given to see strays


@dataclass
class Target:
    """A broker to measure: where it listens, (optionally) its PID for CPU and RSS, and its settings
    when the bench knows them (a broker it started: ``BrokerProcess.settings``; None = unknown)."""

    name: str
    host: str
    port: int
    pid: int | None = None
    settings: dict[str, Any] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Progress:
    """The live line on stderr, rewritten with ``\\r`` about twice a second."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._width = 0

    def show(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r" + text.ljust(self._width))
            self.stream.flush()
            self._width = len(text)

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def say(self, text: str) -> None:
        """A permanent line (a finished run), printed whether or not progress is shown."""
        self.clear()
        print(text, file=self.stream, flush=True)


class _Local:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def call(self, method: str, *args: Any, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            return await getattr(self.worker, method)(*args)

    async def close(self) -> None:
        self.worker.abort()


class _CounterFile:
    """Counters shared with worker processes: a small file in /dev/shm, mmapped by everyone."""

    def __init__(self, workers: int) -> None:
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        fd, self.path = tempfile.mkstemp(prefix="mqhook-bench-", dir=shm)
        try:
            os.ftruncate(fd, Counters.size(workers))
            self.mm = mmap.mmap(fd, Counters.size(workers))
        finally:
            os.close(fd)
        self.counters = Counters(self.mm, workers)

    def close(self) -> None:
        self.counters.release()
        self.mm.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class Bench:
    """Runs a scenario ``repeat`` times against each target, alternating; see ``run``.

    ``run_once`` is one run against one target, without printing: what a script that starts
    its own brokers and sinks (bench/e2e_webhook.py) calls. ``sink_expect``: the sink should
    get every publish as a tracked event (True, the drain waits for them), or none (False: a
    webhook on other topics; the drain gives strays ``SINK_SETTLE`` seconds).
    """

    def __init__(
        self,
        sc: Scenario,
        targets: list[Target],
        repeat: int = 1,
        sink: Remote | None = None,
        progress: Progress | None = None,
        sink_expect: bool = True,
    ) -> None:
        self.sc = sc.validate()
        self.targets = targets
        self.repeat = max(1, repeat)
        self.sink = sink
        self.progress = progress or Progress(False)
        self.sink_expect = sink_expect

    async def run(self) -> dict[str, Any]:
        runs = []
        for r in range(self.repeat):
            for i, target in enumerate(self.targets):
                res = await self.run_once(target, r, use_sink=self.sink is not None and i == 0)
                runs.append(res)
                self.progress.say(merge.one_line(res, self.repeat))
        result: dict[str, Any] = {
            "scenario": merge.scenario_dict(self.sc),
            "description": self.sc.describe(),
            "targets": [
                {"name": t.name, "address": t.address, "pid": t.pid, "settings": t.settings} for t in self.targets
            ],
        }
        if len(self.targets) > 1:
            result["settings_differ"] = settings_differ([(t.name, t.settings) for t in self.targets])
        result.update(
            repeat=self.repeat,
            runs=runs,
            summary=merge.summarize(runs, [t.name for t in self.targets], self.sc.mode),
        )
        return result

    async def run_once(self, target: Target, index: int, use_sink: bool = False) -> dict[str, Any]:
        sc = self.sc
        token = secrets.token_hex(4)
        deadline = time.monotonic() + sc.run_timeout()
        base: dict[str, Any] = {
            "broker": target.name,
            "address": target.address,
            "pid": target.pid,
            "run": index + 1,
            "mode": sc.mode,
            "token": token,
            "errors": [],
        }
        handles: list[Any] = []
        cfile: _CounterFile | None = None
        try:
            if sc.procs == 1:
                counters = Counters(bytearray(Counters.size(1)), 1)
                asg = assignments(sc, token)[0]
                handles = [_Local(Worker(sc, asg, counters, target.host, target.port, deadline))]
            else:
                cfile = _CounterFile(sc.procs)
                counters = cfile.counters
                max_s = sc.run_timeout() + 60
                spawned = await asyncio.gather(
                    *(Remote.spawn("mqhook.loadtest.worker", f"worker {w}", max_s) for w in range(sc.procs)),
                    return_exceptions=True,
                )
                handles = [h for h in spawned if isinstance(h, Remote)]
                if len(handles) < sc.procs:
                    raise RemoteError(f"could not start worker processes: {spawned}")
                await asyncio.gather(
                    *(
                        h.call("init", sc, asg, cfile.path, target.host, target.port, deadline, timeout=30)
                        for h, asg in zip(handles, assignments(sc, token), strict=True)
                    )
                )
            phase = {"pubsub": self._pubsub, "conn-storm": self._connections, "idle": self._connections}[sc.mode]
            base.update(await phase(target, handles, counters, deadline, index, use_sink))
        except (OSError, ProtocolFailure, RemoteError, TimeoutError) as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            base["errors"].append(text)
            base["aborted"] = True
        finally:
            self.progress.clear()
            await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)
            if cfile is not None:
                cfile.close()
        return base

    # -- phases ------------------------------------------------------------------------------
    async def _all(self, handles: list[Any], method: str, *args: Any, timeout: float) -> list[Any]:
        return list(await asyncio.gather(*(h.call(method, *args, timeout=timeout) for h in handles)))

    async def _pubsub(
        self, target: Target, handles: list[Any], counters: Counters, deadline: float, index: int, use_sink: bool
    ) -> dict[str, Any]:
        sc = self.sc
        await self._all(handles, "setup", timeout=min(SETUP_TIMEOUT, max(1.0, deadline - time.monotonic())))
        sink = self.sink if use_sink else None
        if sink is not None:
            await sink.call("reset", timeout=10)
        before = proc_snapshot(target.pid)
        t_start = time.monotonic() + 0.05
        ticker = asyncio.create_task(self._ticker(target, index, counters, t_start))
        try:
            remaining = max(1.0, deadline - time.monotonic() + 5)
            pub_results = await self._all(handles, "publish", t_start, timeout=remaining)
            pubs = [r for w in pub_results for r in w["pubs"]]
            expected = sc.fan * sum(r["sent"] for r in pubs)
            drain_stalled = await self._wait(lambda: counters.total(Counters.DISTINCT), expected, deadline)
            if not drain_stalled:
                # Distinct counts are per subscriber: in a shared group, one sequence number delivered
                # to two members counts twice, so also wait for every packet written to arrive.
                packets = sc.fan * sum(r.get("packets", r["sent"]) for r in pubs)
                drain_stalled = await self._wait(lambda: counters.total(Counters.RECEIVED), packets, deadline)
            sink_stalled = False
            if sink is not None and self.sink_expect:
                published = sum(r["sent"] for r in pubs)

                async def tracked() -> int:
                    return int((await sink.call("snapshot", timeout=10))["tracked"])

                sink_stalled = await self._wait_async(tracked, published, deadline)
            elif sink is not None:
                await asyncio.sleep(min(SINK_SETTLE, max(0.0, deadline - time.monotonic())))
            after = proc_snapshot(target.pid)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        finals = await self._all(handles, "finish", timeout=30)
        sink_snap = await sink.call("snapshot", True, timeout=30) if sink is not None else None
        res = merge.merge_pubsub(sc, pubs, finals, t_start, before, after, sink_snap, self.sink_expect)
        res["drain_stalled"] = drain_stalled
        res["stalled"] = res["stalled"] or drain_stalled or sink_stalled
        if sink_snap is not None:
            res["sink"]["stalled"] = sink_stalled
        return res

    async def _connections(
        self, target: Target, handles: list[Any], counters: Counters, deadline: float, index: int, use_sink: bool
    ) -> dict[str, Any]:
        sc = self.sc
        before = proc_snapshot(target.pid)
        t_start = time.monotonic() + 0.05
        ticker = asyncio.create_task(self._ticker(target, index, counters, t_start, what="connections"))
        try:
            method = "storm" if sc.mode == "conn-storm" else "idle"
            parts = await self._all(handles, method, t_start, timeout=max(1.0, deadline - time.monotonic() + 5))
            opened = proc_snapshot(target.pid)
            if sc.mode == "idle" and sc.hold_seconds:
                await asyncio.sleep(min(sc.hold_seconds, max(0.0, deadline - time.monotonic())))
            after = proc_snapshot(target.pid)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        finals = await self._all(handles, "finish", timeout=60)
        return merge.merge_connections(sc, parts, finals, t_start, before, opened, after)

    async def _wait(self, value: Any, expected: int, deadline: float) -> bool:
        """Poll ``value()`` until it reaches ``expected``; True if it stalled first."""

        async def read() -> Any:
            return value()

        return await self._wait_async(read, expected, deadline, 0.02)

    async def _wait_async(self, value: Any, expected: int, deadline: float, interval: float = 0.1) -> bool:
        """``_wait`` for an awaitable ``value()`` (a worker's counter, over RPC)."""
        last, since = -1, time.monotonic()
        while True:
            v = await value()
            now = time.monotonic()
            if v >= expected:
                return False
            if v != last:
                last, since = v, now
            elif now - since >= self.sc.stall or now >= deadline:
                return True
            await asyncio.sleep(interval)

    async def _ticker(self, target: Target, index: int, counters: Counters, t_start: float, what: str = "") -> None:
        """The progress line: elapsed, sent, received, msg/s in and out over the last interval."""
        if not self.progress.enabled:
            return
        tag = f"{target.name} run {index + 1}/{self.repeat}"
        last_t, last_s, last_r = time.monotonic(), 0, 0
        first = True
        while True:
            if not first:
                await asyncio.sleep(0.5)
            first = False
            now = time.monotonic()
            dt = max(now - last_t, 1e-6)
            if what:
                self.progress.show(f"{tag}: {now - t_start:6.1f}s connecting")
                continue
            s, r = counters.total(Counters.SENT), counters.total(Counters.RECEIVED)
            self.progress.show(
                f"{tag}: {now - t_start:6.1f}s sent {s:,} recv {r:,} "
                f"in {(s - last_s) / dt:,.0f}/s out {(r - last_r) / dt:,.0f}/s"
            )
            last_t, last_s, last_r = now, s, r


async def start_sink(host: str, port: int, track_event: str, encoding: str, max_seconds: float) -> tuple[Remote, int]:
    """A sink child process; returns it and the port it listens on."""
    remote = await Remote.spawn("mqhook.loadtest.sink", "sink", max_seconds)
    try:
        bound = await remote.call("start", host, port, track_event, encoding, timeout=30)
    except BaseException:
        await remote.close()
        raise
    return remote, int(bound)


async def run_async(
    sc: Scenario,
    targets: list[Target],
    repeat: int = 1,
    sink_port: int | None = None,
    sink_encoding: str = "auto",
    sink_event: str = "message.publish",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the scenario; with ``sink_port`` also a webhook receiver there (first target only)."""
    sink = None
    try:
        if sink_port is not None:
            max_s = (sc.run_timeout() + 60) * repeat * len(targets)
            sink, sink_port = await start_sink("127.0.0.1", sink_port, sink_event, sink_encoding, max_s)
        result = await Bench(sc, targets, repeat, sink, progress).run()
        if sink is not None:
            result["sink_port"] = sink_port
        return result
    finally:
        if sink is not None:
            with contextlib.suppress(Exception):
                await sink.call("stop", timeout=10)
            await sink.close()


def run(sc: Scenario, targets: list[Target], **kwargs: Any) -> dict[str, Any]:
    """Synchronous entry point (the harness API): ``run(Scenario(...), [Target(...)])``."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - mqhook depends on uvloop
        return asyncio.run(run_async(sc, targets, **kwargs))
    return uvloop.run(run_async(sc, targets, **kwargs))
