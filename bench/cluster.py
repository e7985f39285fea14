"""Cluster benchmark (issue 14): what routing through NATS costs, on this machine, as ratios.

Run from the project root::

    .venv/bin/python bench/cluster.py [--count N] [--rate R] [--fanin-count N] [--repeat K] [--json out.json]

Two measurements, each alternating its two cases (A, B, A, B, ...) so slow drift of a shared
machine hits both alike; every run has fresh connections and topics:

1. **CPU per delivered message, within one node vs across nodes.** One nats-server (JetStream on,
   as ``--workers`` starts it) and two mqhook nodes on it (``[cluster] nats_url``, like two
   ``--workers``). 1 QoS 0 publisher -> 1 subscriber at a fixed rate (``--rate``, below what
   either case can carry, so both do the same work per second): *local* = both on node A (B idle;
   A still publishes every message to NATS, as a clustered node does), *cross* = publisher on A,
   subscriber on B. Reported: CPU seconds per million delivered messages of the brokers (both
   mqhook processes together) and, separately, of nats-server; the ratio cross / local
   (target: <= 2).
2. **QoS 0 fan-in throughput, ``--workers 2`` vs one process.** 4 publishers -> 1 subscriber, as
   fast as possible (window 10000), the generator in this process on the same 2 cores.
   *single* = ``mqhook run``; *workers* = ``mqhook run --workers 2`` with ``[cluster] nats_url``
   set to a nats-server this script starts (the same binary and flags the supervisor would use, plus
   a monitoring port, so the bench can wait until the subscription's interest is in NATS before it
   publishes). SO_REUSEPORT places the clients: the run line says how many publishers shared the
   subscriber's worker. Reported: msg/s in and out, and the CPU of each side (brokers: supervisor
   + both workers; nats-server; the generator) in seconds and in cores (CPU s / wall s).

The generator is the load-test harness's (``mqhook.loadtest.worker.Worker``, hand-built MQTT
3.1.1 on uvloop), driven here so that each client can connect to its own node; CPU comes from
/proc (utime + stime) before the first publish and after the last receipt.

Results on a quiet machine (2 vCPU, Python 3.11.7, nats-server 2.15, nats-py 2.16), ``.venv/bin/python
bench/cluster.py --json out.json`` (defaults: ``--count 100000 --rate 10000 --fanin-count 400000
--repeat 3``), 73 s, medians of 3 runs per case:

- [1] broker CPU per delivered message: local 12.2 us, cross 22.8 us: **ratio 1.87** (target <= 2).
  nats-server: 4.2 us local (it still gets, and drops, every message a clustered node publishes)
  vs 7.4 us cross; brokers + nats-server: ratio 1.84. p50 latency 0.20 ms local, 0.59 ms cross.
  Nothing lost.
- [2] QoS 0 fan-in 4 -> 1: one process 341,600 msg/s out (0.99 cores, 2.9 us/msg), ``--workers 2``
  191,900 (brokers 1.34 cores + nats-server 0.15, 7.0 us/msg): **ratio 0.56**. The subscriber's
  worker is the bottleneck (about 1 core: half the publishers plus every message that comes
  through NATS, ~6 us each). Nothing lost.

(A first run on a machine shared with other test runs, load average ~5, gave 1.72 and 0.37.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mqhook.cluster.subjects import encode_topic
from mqhook.cluster.workers import nats_server_executable
from mqhook.loadtest import merge
from mqhook.loadtest.brokers import BrokerProcess, free_port, start_mqhook, wait_port
from mqhook.loadtest.client import Counters
from mqhook.loadtest.scenario import Scenario, assignments
from mqhook.loadtest.stats import cpu_seconds
from mqhook.loadtest.worker import Worker

WORKER_PIDS = re.compile(r"\b(w\d+)=(\d+)")


class Nats:
    """A nats-server on 127.0.0.1 with JetStream and a monitoring port."""

    def __init__(self) -> None:
        self.port, self.http = free_port(), free_port()
        store = tempfile.mkdtemp(prefix="mqhook-bench-nats-")
        argv = [nats_server_executable(), "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.http)]
        argv += ["-js", "-sd", store]
        self.proc = BrokerProcess("nats-server", argv, None, store)
        if not wait_port("127.0.0.1", self.port, 10.0):
            self.proc.stop()
            raise SystemExit("bench/cluster.py: nats-server did not start")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def interest(self, subject: str) -> int:
        """How many subscriptions match ``subject`` in this server."""
        url = f"http://127.0.0.1:{self.http}/subsz?subs=1&test={subject}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(json.loads(resp.read()).get("total", 0))


class PlacedWorker(Worker):
    """The harness's worker, each client connecting to the address ``place(name)`` gives
    (``sub0``, ``pub0``, ...)."""

    def __init__(self, *args: Any, place: Callable[[str], tuple[str, int]]) -> None:
        super().__init__(*args)
        self.place = place

    async def _open(self, name: str, client_id: str) -> Any:
        self.host, self.port = self.place(name)
        return await super()._open(name, client_id)


def clustered(nats: Nats, name: str, extra: list[str] | None = None) -> BrokerProcess:
    cfg = Path(tempfile.mkdtemp(prefix="mqhook-bench-cfg-")) / "cluster.toml"
    cfg.write_text(f'node = "{name}"\n[cluster]\nnats_url = "{nats.url}"\n')
    broker = start_mqhook(["--config", str(cfg), *(extra or [])], timeout=40.0)
    shutil.rmtree(cfg.parent, ignore_errors=True)  # read at start
    return broker


def supervised_pids(broker: BrokerProcess) -> list[int]:
    """The supervisor and its workers (from its ``N workers on NATS ... (w1=PID w2=PID)`` line)."""
    for line in broker.lines:
        if "workers on NATS" in line:
            return [broker.pid, *(int(p) for _, p in WORKER_PIDS.findall(line))]
    raise SystemExit("bench/cluster.py: the supervisor did not name its workers")


def _cpu(pids: list[int]) -> list[float]:
    return [cpu_seconds(p) or 0.0 for p in pids]


async def one_run(
    sc: Scenario,
    place: Callable[[str], tuple[str, int]],
    broker_pids: list[int],
    nats: Nats | None,
    label: str,
    placement: Callable[[str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One pub/sub run (fresh clients and topics): set up, wait for NATS interest in every
    publisher's subject (when ``nats``), publish, drain, and the figures with CPU of each side
    (``broker_cpu_split``: per process of ``broker_pids``). ``placement(token)``, called after the
    set-up, says where the clients are."""
    token = secrets.token_hex(4)
    deadline = time.monotonic() + sc.run_timeout()
    counters = Counters(bytearray(Counters.size(1)), 1)
    w = PlacedWorker(sc, assignments(sc, token)[0], counters, "127.0.0.1", 0, deadline, place=place)
    try:
        await w.setup()
        if nats is not None:
            subjects = [encode_topic(sc.pub_topic(token, p)) for p in range(sc.pubs)]
            end = time.monotonic() + 10.0
            while not all(nats.interest(s) for s in subjects):
                if time.monotonic() > end:
                    raise SystemExit(f"bench/cluster.py: {label}: no interest in NATS after 10 s")
                await asyncio.sleep(0.01)
        where = placement(token) if placement is not None else None
        cpu0, ncpu0 = _cpu(broker_pids), cpu_seconds(nats.pid) if nats else None
        t_start = time.monotonic() + 0.05
        pubs = (await w.publish(t_start))["pubs"]
        expected = sc.fan * sum(r["sent"] for r in pubs)
        last, since = -1, time.monotonic()
        while (got := counters.total(Counters.DISTINCT)) < expected:
            now = time.monotonic()
            if got != last:
                last, since = got, now
            elif now - since > sc.stall or now > deadline:
                break
            await asyncio.sleep(0.01)
        cpu1, ncpu1 = _cpu(broker_pids), cpu_seconds(nats.pid) if nats else None
        finals = [await w.finish()]
    except BaseException:
        w.abort()
        raise
    res = merge.merge_pubsub(sc, pubs, finals, t_start, {"cpu_s": sum(cpu0)}, {"cpu_s": sum(cpu1)})
    res["broker_cpu_split"] = [round(y - x, 3) for x, y in zip(cpu0, cpu1, strict=True)]
    res["placement"] = where
    delivered = res["distinct"]
    wall = res["elapsed_s"] or 1e-9
    res["case"] = label
    res["nats_cpu_s"] = round(ncpu1 - ncpu0, 3) if ncpu0 is not None and ncpu1 is not None else None
    res["broker_cpu_us_per_delivered"] = round(res["broker_cpu_s"] / delivered * 1e6, 3) if delivered else None
    res["nats_cpu_us_per_delivered"] = (
        round(res["nats_cpu_s"] / delivered * 1e6, 3) if delivered and res["nats_cpu_s"] is not None else None
    )
    res["nats_core_use"] = round(res["nats_cpu_s"] / wall, 3) if res["nats_cpu_s"] is not None else None
    for key in ("timeline_in", "timeline_out", "latency_buckets_us"):
        res.pop(key, None)
    return res


def line(res: dict[str, Any], extra: str = "") -> str:
    nats = (
        f", nats {res['nats_cpu_us_per_delivered']:.2f} us/msg ({res['nats_core_use']:.2f} cores)"
        if res.get("nats_cpu_s") is not None
        else ""
    )
    return (
        f"  {res['case']:<8} in {res['msgs_in_per_s'] or 0:>9,.0f}/s out {res['msgs_out_per_s'] or 0:>9,.0f}/s "
        f"delivered {res['distinct']:,} lost {res['lost']} dups {res['dups']} p50 {res['latency_p50_ms']} ms | "
        f"broker {res['broker_cpu_us_per_delivered']:.2f} us/msg ({res['broker_core_use']:.2f} cores){nats}, "
        f"generator {res['generator_core_use']:.2f} cores{extra}"
    )


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


async def cpu_per_message(args: argparse.Namespace, out: dict[str, Any]) -> None:
    print(
        f"[1] CPU per delivered message: 1 QoS 0 pub -> 1 sub, {args.count:,} msgs at {args.rate:,.0f}/s, "
        "two mqhook nodes on one nats-server",
        flush=True,
    )
    nats = Nats()
    nodes: list[BrokerProcess] = []
    try:
        nodes = [clustered(nats, "bench@a"), clustered(nats, "bench@b")]
        a, b = nodes
        pids = [a.pid, b.pid]
        sc = Scenario(pubs=1, subs=1, qos=0, count=args.count, rate=args.rate, payload=args.payload)
        cases = {
            "local": lambda name: (a.host, a.port),
            "cross": lambda name: (b.host, b.port) if name.startswith("sub") else (a.host, a.port),
        }
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in cases}
        for _ in range(args.repeat):
            for label, place in cases.items():
                res = await one_run(sc, place, pids, nats, label)
                runs[label].append(res)
                print(line(res), flush=True)
        summary: dict[str, Any] = {}
        for label in cases:
            summary[label] = {
                k: median(runs[label], k)
                for k in ("broker_cpu_us_per_delivered", "nats_cpu_us_per_delivered", "msgs_out_per_s", "lost")
            }
        lo, cr = summary["local"]["broker_cpu_us_per_delivered"], summary["cross"]["broker_cpu_us_per_delivered"]
        nlo, ncr = summary["local"]["nats_cpu_us_per_delivered"], summary["cross"]["nats_cpu_us_per_delivered"]
        summary["ratio_broker"] = round(cr / lo, 3) if lo and cr else None
        summary["ratio_with_nats"] = round((cr + ncr) / (lo + nlo), 3) if lo and cr and nlo is not None else None
        print(
            f"  => broker CPU per delivered message: local {lo:.2f} us, cross {cr:.2f} us, "
            f"ratio {summary['ratio_broker']} (target <= 2); nats-server: local {nlo:.2f} us, cross {ncr:.2f} us; "
            f"brokers + nats-server ratio {summary['ratio_with_nats']}",
            flush=True,
        )
        out["cpu_per_message"] = {"scenario": merge.scenario_dict(sc), "runs": runs, "summary": summary}
    finally:
        for n in nodes:
            n.stop(10.0)
        nats.proc.stop()


def worker_of(broker: BrokerProcess, client_id: str) -> str:
    """``w1`` if worker 1's admin API knows the client, else ``w2``."""
    try:
        broker.admin_json(f"/api/v1/clients/{client_id}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return "w2"
        raise
    return "w1"


async def fanin(args: argparse.Namespace, out: dict[str, Any]) -> None:
    sc = Scenario(pubs=4, subs=1, qos=0, count=args.fanin_count, payload=args.payload)
    print(f"[2] QoS 0 fan-in, {sc.describe()}: one process vs --workers 2", flush=True)
    nats = Nats()
    single = workers = None
    try:
        single = start_mqhook(timeout=20.0)
        workers = clustered(nats, "bench@w", ["--workers", "2"])
        wpids = supervised_pids(workers)
        wb = workers

        def where(token: str) -> dict[str, Any]:
            return {
                "sub": worker_of(wb, f"mqb-{token}-s0"),
                "pubs": [worker_of(wb, f"mqb-{token}-p{i}") for i in range(sc.pubs)],
            }

        runs: dict[str, list[dict[str, Any]]] = {"single": [], "workers": []}
        for _ in range(args.repeat):
            res = await one_run(sc, lambda name: (single.host, single.port), [single.pid], None, "single")
            runs["single"].append(res)
            print(line(res), flush=True)
            res = await one_run(sc, lambda name: (workers.host, workers.port), wpids, nats, "workers", where)
            runs["workers"].append(res)
            p = res["placement"]
            split = ", ".join(
                f"{n} {c:.2f}" for n, c in zip(("sup", "w1", "w2"), res["broker_cpu_split"], strict=False)
            )
            shared = sum(x == p["sub"] for x in p["pubs"])
            print(line(res, f" | sub on {p['sub']}, {shared}/4 pubs with it; CPU s {split}"), flush=True)
        summary: dict[str, Any] = {}
        for label in runs:
            summary[label] = {
                k: median(runs[label], k)
                for k in (
                    "msgs_in_per_s",
                    "msgs_out_per_s",
                    "broker_core_use",
                    "nats_core_use",
                    "generator_core_use",
                    "broker_cpu_us_per_delivered",
                    "lost",
                )
            }
        s, w = summary["single"]["msgs_out_per_s"], summary["workers"]["msgs_out_per_s"]
        summary["ratio_out"] = round(w / s, 3) if s and w else None
        print(
            f"  => msg/s out: single {s:,.0f}, --workers 2 {w:,.0f}, ratio {summary['ratio_out']}; "
            f"cores: single broker {summary['single']['broker_core_use']}, "
            f"workers brokers {summary['workers']['broker_core_use']} + nats {summary['workers']['nats_core_use']}; "
            f"generator {summary['single']['generator_core_use']} / {summary['workers']['generator_core_use']}",
            flush=True,
        )
        out["fanin"] = {"scenario": merge.scenario_dict(sc), "runs": runs, "summary": summary}
    finally:
        for br in (single, workers):
            if br is not None:
                br.stop(20.0)
        nats.proc.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000, help="messages per run of [1]")
    ap.add_argument("--rate", type=float, default=10_000, help="msg/s of [1]")
    ap.add_argument("--fanin-count", type=int, default=400_000, help="messages per run of [2]")
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each case, alternating")
    ap.add_argument("--only", choices=("cpu", "fanin"), help="one of the two measurements")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {"command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    t0 = time.monotonic()
    if args.only in (None, "cpu"):
        asyncio.run(cpu_per_message(args, out))
    if args.only in (None, "fanin"):
        asyncio.run(fanin(args, out))
    out["seconds"] = round(time.monotonic() - t0, 1)
    print(f"done in {out['seconds']} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    bad = [r for part in ("cpu_per_message", "fanin") for rs in out.get(part, {}).get("runs", {}).values() for r in rs]
    return 1 if any(r["lost"] or r["dups"] or r["stalled"] for r in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
