"""Connection storm and idle connections: many CONNECTs from one worker, paced and bounded.

``connect_many`` opens the worker's range of connection indices. Each attempt is TCP connect,
CONNECT, CONNACK (and with ``subscribe``, one SUBSCRIBE / SUBACK), under
``Scenario.connect_timeout``; at most ``concurrency / procs`` are in progress, and with
``connect_rate`` they start at that pace (split over the processes). CONNECT -> CONNACK and the
TCP connect time go into two histograms; failures are counted by kind (timeout, the OS error,
a refused CONNACK).
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from typing import TYPE_CHECKING, Any

from mqhook.loadtest import packets as pk
from mqhook.loadtest.client import MqttClient, ProtocolFailure
from mqhook.loadtest.stats import Histogram

if TYPE_CHECKING:
    from mqhook.loadtest.worker import Worker


def raise_nofile(need: int) -> None:
    """Raise the soft limit of open files to ``need`` (up to the hard limit), or fail clearly."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard == resource.RLIM_INFINITY or need <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        return
    raise ProtocolFailure(f"{need} file descriptors needed, the limit is {soft} (hard {hard}): use more --procs")


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return str(exc).split(": ", 1)[-1][:60]


async def connect_many(w: Worker, t_start: float, subscribe: bool, keep: bool) -> dict[str, Any]:
    """Open connections ``w.asg.conn_start`` .. ``conn_stop``; keep them in ``w.held`` if ``keep``."""
    sc = w.sc
    n = w.asg.conn_stop - w.asg.conn_start
    if keep:
        raise_nofile(n + 64)
    rate = sc.connect_rate / sc.procs if sc.connect_rate else 0.0
    sem = asyncio.Semaphore(max(1, sc.concurrency // sc.procs))
    connack = Histogram()
    tcp = Histogram()
    failures: dict[str, int] = {}
    last = [0.0]
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        async with sem:
            transport = None
            try:
                async with asyncio.timeout(max(0.01, min(sc.connect_timeout, w.deadline - time.monotonic()))):
                    t0 = time.perf_counter()
                    transport, c = await loop.create_connection(lambda: MqttClient(f"c{i}"), w.host, w.port)
                    t1 = time.perf_counter()
                    c.write(pk.connect(w.client_id("c", i), sc.keepalive))
                    rc = await asyncio.shield(c.connack)
                    t2 = time.perf_counter()
                    if rc != 0:
                        raise ProtocolFailure(f"CONNACK {rc}")
                    if subscribe:
                        topic = f"{sc.topic_prefix}/{w.asg.token}/idle/{i}"
                        await c.subscribe(topic, sc.qos, sc.connect_timeout)
            except (TimeoutError, OSError, ProtocolFailure) as exc:
                kind = _failure_kind(exc)
                failures[kind] = failures.get(kind, 0) + 1
                if transport is not None:
                    transport.abort()
                return
            tcp.record(int((t1 - t0) * 1e6))
            connack.record(int((t2 - t1) * 1e6))
            last[0] = time.monotonic()
            if keep:
                w.held.append(c)
            else:
                c.disconnect()

    delay = t_start - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    tasks = []
    for j in range(n):
        if rate:
            wait = t_start + j / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        if time.monotonic() > w.deadline:
            break
        tasks.append(asyncio.create_task(one(w.asg.conn_start + j)))
        if not rate and len(tasks) % 256 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    w.start_pinger()
    return {
        "worker": w.asg.worker,
        "attempted": len(tasks),
        "ok": connack.total,
        "failures": failures,
        "t_last": last[0],
        "connack_hist": connack.counts,
        "tcp_hist": tcp.counts,
    }
