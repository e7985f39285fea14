"""End-to-end benchmark: what a webhook on ``message.publish`` costs the broker, and how fast it delivers.

Run from the project root::

    .venv/bin/python bench/e2e_webhook.py [--messages 200000] [--payload 64] [--json out.json]

Scenarios, each against a fresh ``mqhook run`` process, back to back in one run (see bench/README.md):

1. ``baseline``: no webhook; N QoS 0 publishes, 1 publisher -> 1 subscriber on one topic;
2. ``unrelated``: a webhook on ``message.publish`` for ``nobody/#`` only (should cost ~nothing);
3. ``batch1``: a webhook on every publish, ``batch_size`` 1 (``--messages-b1`` messages, fewer);
4. ``batch100``: the same with ``batch_size`` 100, ``batch_time`` "5ms", all N messages.

The machine is shared and noisy, so the figures that matter are ratios to the baseline of the same
run: every scenario runs between two baseline runs (B 2 B 3 B 4 B 2 B ...; ``--repeat`` passes) and
is divided by the mean of those two neighbours; the table shows the median of these paired ratios.

Processes: this orchestrator (idle while measuring), the broker, ``bench/loadgen.py`` (publisher
and subscriber) and, with a webhook, a receiver (``e2e_webhook.py receiver``, aiohttp).

Every wait is bounded (start-up, stall, hard timeouts) and every child is stopped in ``finally``
(SIGTERM, then SIGKILL); children also get SIGTERM if this process dies (PR_SET_PDEATHSIG), and
run in their own session so Ctrl-C reaches only this process, which then stops them.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import json
import os
import platform
import queue
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = Path(__file__).resolve().parent / "loadgen.py"
TOPIC = "bench/t"
READY_BROKER = re.compile(r"listening mqtt=(\S+) admin=(\S+)")
READY_RECEIVER = re.compile(r"receiver listening port=(\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
RAW_KEYS = ("loadgen", "receiver", "receiver_final", "stats", "config", "webhook_stats")


# =============================================================================================
# The webhook receiver (runs in its own process: ``e2e_webhook.py receiver``)
# =============================================================================================


def receiver_main(argv: list[str]) -> int:
    """Count webhook events: a body is one JSON object or a JSON array of them.

    Each event's ``payload`` starts with the loadgen's 10-digit sequence number, marked in a
    bitmap, so duplicates are told from distinct events. Answers 200 (400 to a body that is not
    JSON events, counted as ``bad``). ``GET /count`` returns the counters and the monotonic time of
    the first and last request with events (CLOCK_MONOTONIC is system-wide on Linux, so the
    orchestrator compares it with the loadgen's clock).
    """
    import asyncio
    import socket

    import msgspec
    import uvloop
    from aiohttp import web

    p = argparse.ArgumentParser(prog="e2e_webhook.py receiver")
    p.add_argument("--expect", type=int, default=0, help="sequence numbers 0..expect-1 are tracked")
    p.add_argument("--max-seconds", type=float, default=900.0, help="exit on its own after this long")
    args = p.parse_args(argv)

    class Event(msgspec.Struct):
        payload: str = ""  # every other field is skipped by the decoder

    decoder = msgspec.json.Decoder(Event | list[Event])
    seen = bytearray(args.expect)
    st = {
        "requests": 0,
        "events": 0,
        "distinct": 0,
        "dups": 0,
        "foreign": 0,
        "bad": 0,
        "max_batch": 0,
        "t_first": 0.0,
        "t_last": 0.0,
    }

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.monotonic()
        st["requests"] += 1
        try:
            obj = decoder.decode(body)
        except msgspec.DecodeError:
            st["bad"] += 1
            return web.Response(status=400, text="not JSON events")
        events = obj if isinstance(obj, list) else [obj]
        if not events:
            return web.Response(text="ok")
        if not st["events"]:
            st["t_first"] = now
        st["t_last"] = now
        st["events"] += len(events)
        st["max_batch"] = max(st["max_batch"], len(events))
        expect = args.expect
        for ev in events:
            try:
                seq = int(ev.payload[:10])
            except ValueError:
                seq = -1
            if not 0 <= seq < expect:
                st["foreign"] += 1
            elif seen[seq]:
                st["dups"] += 1
            else:
                seen[seq] = 1
                st["distinct"] += 1
        return web.Response(text="ok")

    async def count(request: web.Request) -> web.Response:
        return web.json_response({**st, "now": time.monotonic(), "cpu_s": time.process_time()})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/count", count)
        app.router.add_route("*", "/{tail:.*}", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"receiver listening port={sock.getsockname()[1]}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.max_seconds)
        await runner.cleanup()

    uvloop.run(serve())
    return 0


# =============================================================================================
# Child processes
# =============================================================================================


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A child process whose chosen output stream is read by a thread, line by line."""

    def __init__(self, name: str, cmd: list[str], ready: re.Pattern[str] | None, ready_on: str = "stderr") -> None:
        self.name = name
        self.cmd = cmd
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self._ready: queue.Queue[re.Match[str] | None] = queue.Queue()
        self._pattern = ready
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.stdout: list[str] = []
        for stream, keep in ((self.proc.stdout, ready_on == "stdout"), (self.proc.stderr, ready_on == "stderr")):
            threading.Thread(target=self._read, args=(stream, keep), daemon=True).start()

    def _read(self, stream: Any, watch: bool) -> None:
        matched = not watch or self._pattern is None
        for line in stream:
            line = line.rstrip("\n")
            self.lines.append(line)
            if stream is self.proc.stdout:
                self.stdout.append(line)
            if not matched and self._pattern is not None and (m := self._pattern.search(line)):
                matched = True
                self._ready.put(m)
        if not matched:
            self._ready.put(None)  # the stream ended before the line came

    def wait_ready(self, timeout: float) -> re.Match[str]:
        try:
            m = self._ready.get(timeout=timeout)
        except queue.Empty:
            m = None
        if m is None:
            self.stop()
            tail = "\n    ".join(list(self.lines)[-15:])
            raise RuntimeError(f"{self.name} did not become ready in {timeout}s; last output:\n    {tail}")
        return m

    def cpu_seconds(self) -> float | None:
        """user + system CPU of the process so far (from /proc), None once it is gone."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code (None if unknown)."""
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        return proc.returncode


class Children:
    """Every child started; ``stop_all`` in ``finally`` so none outlives the run."""

    def __init__(self) -> None:
        self.live: list[Child] = []

    def start(self, name: str, cmd: list[str], ready: re.Pattern[str] | None, ready_on: str = "stderr") -> Child:
        child = Child(name, cmd, ready, ready_on)
        self.live.append(child)
        return child

    def stop(self, child: Child, timeout: float = 10.0) -> int | None:
        rc = child.stop(timeout)
        with contextlib.suppress(ValueError):
            self.live.remove(child)
        return rc

    def stop_all(self) -> None:
        while self.live:
            self.stop(self.live[-1], timeout=3.0)


def http_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


# =============================================================================================
# Scenarios
# =============================================================================================


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # strings and lists of strings: JSON escapes are valid TOML


def write_config(path: Path, webhook: dict[str, Any] | None) -> None:
    lines = ['node = "bench@127.0.0.1"']
    if webhook:
        lines.append("[[webhooks]]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in webhook.items())
    path.write_text("\n".join(lines) + "\n")


def scenarios(args: argparse.Namespace) -> list[dict[str, Any]]:
    hook = {
        "name": "bench",
        "events": ["message.publish"],
        "inflight_window": 100,
        "pool_size": 8,
        "overflow": "backpressure",
        "max_queued_events": 100_000,
    }
    out = [
        {"key": "baseline", "title": "1 baseline: no webhook", "messages": args.messages, "webhook": None},
        {
            "key": "unrelated",
            "title": '2 webhook on "nobody/#"',
            "messages": args.messages,
            "webhook": {**hook, "topics": ["nobody/#"], "batch_size": 100, "batch_time": "5ms"},
            "events_expected": 0,
        },
        {
            "key": "batch1",
            "title": "3 webhook batch_size 1",
            "messages": args.messages_b1,
            "webhook": {**hook, "topics": ["#"], "batch_size": 1},
            "events_expected": args.messages_b1,
        },
        {
            "key": "batch100",
            "title": '4 webhook batch_size 100 "5ms"',
            "messages": args.messages,
            "webhook": {**hook, "topics": ["#"], "batch_size": 100, "batch_time": "5ms"},
            "events_expected": args.messages,
        },
    ]
    return out


def schedule(plan: list[dict[str, Any]], repeat: int) -> list[dict[str, Any]]:
    """Every other scenario sandwiched between two baselines: B S1 B S2 B S3 B S1 B ...

    Each run is then compared with the baselines just before and after it (paired ratios), which
    cancels most of the slow drift of a shared machine. ``repeat`` passes, interleaved.
    """
    base = next((sc for sc in plan if sc["key"] == "baseline"), None)
    others = [sc for sc in plan if sc is not base]
    if base is None:
        return others * repeat
    if not others:
        return [base] * repeat
    seq = [base]
    for _ in range(repeat):
        for sc in others:
            seq += [sc, base]
    return seq


class QueueSampler:
    """Reads the webhook's counters from /api/v1/stats every ``every`` seconds while we wait, to see
    how deep its queue got and whether it was ever ``saturated`` (backpressure on the publisher).
    One small admin request per half second: negligible next to the load."""

    def __init__(self, admin: str | None, every: float = 0.5) -> None:
        self.url = f"{admin}/api/v1/stats" if admin else None
        self.every = every
        self.next = 0.0
        self.samples = 0
        self.max_queuing = 0
        self.saturated_samples = 0

    def poll(self) -> None:
        now = time.monotonic()
        if self.url is None or now < self.next:
            return
        self.next = now + self.every
        try:
            hook = http_json(self.url, timeout=2.0)["webhooks"]["bench"]
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return
        self.samples += 1
        self.max_queuing = max(self.max_queuing, hook["queuing"])
        self.saturated_samples += bool(hook["saturated"])

    def summary(self) -> dict[str, int]:
        return {"samples": self.samples, "max_queuing": self.max_queuing, "saturated_samples": self.saturated_samples}


def wait_events(
    url: str, expected: int, stall: float, deadline: float, sampler: QueueSampler, min_wait: float = 0.0
) -> tuple[dict[str, Any], bool]:
    """Poll the receiver until ``expected`` events arrived; (last counts, stalled?).

    Stalled = no new event for ``stall`` seconds (or the scenario deadline passed) before all
    arrived. With ``expected`` 0 it waits ``min_wait`` seconds so late strays would be seen.
    """
    start = time.monotonic()
    last_change = start
    last_events = -1
    counts: dict[str, Any] = {}
    while True:
        counts = http_json(url)
        now = time.monotonic()
        if counts["events"] != last_events:
            last_events, last_change = counts["events"], now
        if expected and counts["events"] >= expected:
            return counts, False
        if not expected and now - start >= min_wait:
            return counts, False
        if now - last_change >= stall or now >= deadline:
            return counts, bool(expected)
        sampler.poll()
        time.sleep(0.05)


def run_scenario(
    sc: dict[str, Any], args: argparse.Namespace, tmp: Path, children: Children, tag: str
) -> dict[str, Any]:
    t_start = time.monotonic()
    deadline = t_start + args.scenario_timeout
    n = sc["messages"]
    res: dict[str, Any] = {"key": sc["key"], "title": sc["title"], "messages": n, "webhook": sc["webhook"]}
    receiver = None
    broker = None
    try:
        hook = dict(sc["webhook"]) if sc["webhook"] else None
        if hook is not None:
            receiver = children.start(
                "receiver",
                [sys.executable, str(Path(__file__).resolve()), "receiver", "--expect", str(n)],
                READY_RECEIVER,
                ready_on="stdout",
            )
            rport = int(receiver.wait_ready(15.0).group(1))
            hook = {"name": hook.pop("name"), "url": f"http://127.0.0.1:{rport}/hook", **hook}
        cfg = tmp / f"{sc['key']}.toml"
        write_config(cfg, hook)
        res["config"] = cfg.read_text()
        broker = children.start(
            "broker",
            [
                sys.executable,
                "-m",
                "mqhook",
                "run",
                "--mqtt-bind",
                "127.0.0.1:0",
                "--admin-bind",
                "127.0.0.1:0",
                "--config",
                str(cfg),
                "--log-level",
                "warning",
            ],
            READY_BROKER,
        )
        m = broker.wait_ready(20.0)
        mqtt_host, _, mqtt_port = m.group(1).rpartition(":")
        admin = f"http://{m.group(2)}"
        cpu0 = broker.cpu_seconds() or 0.0

        lg_timeout = max(10.0, deadline - time.monotonic() - 5.0)
        # Under webhook backpressure the broker stops reading the publisher until the queue drains
        # from 80% to 50% of max_queued_events: the subscriber then sees nothing for a while.
        stall = args.stall_webhook if sc.get("events_expected") else args.stall
        cmd = [
            sys.executable,
            str(LOADGEN),
            "--host",
            mqtt_host.strip("[]"),
            "--port",
            mqtt_port,
            "--messages",
            str(n),
            "--payload",
            str(args.payload),
            "--topic",
            TOPIC,
            "--window",
            str(args.window),
            "--stall",
            str(stall),
            "--timeout",
            str(round(lg_timeout, 1)),
            "--tag",
            tag,
        ]
        sampler = QueueSampler(admin if sc.get("events_expected") else None)
        loadgen = children.start("loadgen", cmd, None)
        lg_limit = time.monotonic() + lg_timeout + 10.0
        while loadgen.proc.poll() is None and time.monotonic() < lg_limit:
            sampler.poll()
            with contextlib.suppress(subprocess.TimeoutExpired):
                loadgen.proc.wait(0.1)
        lg_rc = children.stop(loadgen, timeout=3.0)
        lg: dict[str, Any] = {}
        for line in reversed(loadgen.stdout):
            with contextlib.suppress(ValueError):
                lg = json.loads(line)
                break
        if not lg:
            tail = " | ".join(list(loadgen.lines)[-5:])
            lg = {"error": f"loadgen exited {lg_rc} without a result: {tail}", "received": 0, "lost": n}
        res["loadgen"] = lg

        if receiver is not None:
            expected = sc.get("events_expected", 0)
            counts, stalled = wait_events(
                f"http://127.0.0.1:{rport}/count", expected, args.stall, deadline, sampler, min_wait=0.5
            )
            res["receiver"] = counts
            res["events_stalled"] = stalled
            if sampler.url:
                res["queue_samples"] = sampler.summary()
        cpu1 = broker.cpu_seconds()
        res["broker_cpu_s"] = round(cpu1 - cpu0, 3) if cpu1 is not None else None
        try:
            res["stats"] = http_json(f"{admin}/api/v1/stats")
        except (OSError, urllib.error.URLError, ValueError) as exc:
            res["stats"] = None
            res.setdefault("errors", []).append(f"/api/v1/stats: {exc}")
        if receiver is not None and res.get("stats") is not None:
            # Anything the broker sent after the snapshot (it should be nothing) would show here.
            res["receiver_final"] = http_json(f"http://127.0.0.1:{rport}/count")
    except (RuntimeError, OSError, urllib.error.URLError, ValueError) as exc:
        res.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")
    finally:
        if broker is not None:
            alive = broker.proc.poll() is None
            rc = children.stop(broker, timeout=15.0)
            res["broker_exit"] = rc if alive else f"died early ({rc})"
            warnings = [line for line in broker.lines if "listening" not in line]
            if warnings:
                res["broker_log_tail"] = warnings[-10:]
        if receiver is not None:
            children.stop(receiver, timeout=5.0)
    res["wall_s"] = round(time.monotonic() - t_start, 2)
    summarize(res)
    return res


def summarize(res: dict[str, Any]) -> None:
    """Derived figures: msg/s, events/s, losses, CPU per message, notes."""
    n = res["messages"]
    lg = res.get("loadgen") or {}
    notes: list[str] = list(res.get("errors", []))
    res["msg_per_s"] = lg.get("msg_per_s") or 0.0
    res["sub_lost"] = lg.get("lost", n)
    if lg.get("error"):
        notes.append(f"loadgen: {lg['error']}")
    if lg.get("stalled"):
        notes.append(f"subscriber stalled: got {lg.get('received', 0)}/{n}")
    if lg.get("dups") or lg.get("out_of_order") or lg.get("foreign"):
        odd = {k: lg.get(k) for k in ("dups", "out_of_order", "foreign")}
        notes.append(f"subscriber: {odd}")
    cpu = res.get("broker_cpu_s")
    res["broker_cpu_us_per_msg"] = round(cpu / n * 1e6, 2) if cpu is not None and n else None
    end = max(lg.get("t_last_receive") or 0.0, (res.get("receiver") or {}).get("t_last") or 0.0)
    if cpu is not None and lg.get("t_first_publish") and end > lg["t_first_publish"]:
        # Share of one core the broker got while measured: well under 1.0 in a broker-bound
        # scenario means other processes on the machine took its CPU.
        res["broker_cpu_share"] = round(cpu / (end - lg["t_first_publish"]), 2)
    samples = res.get("queue_samples") or {}
    res["queue_max"] = samples.get("max_queuing")
    res["saturated_seen"] = bool(samples.get("saturated_samples"))
    stats = res.get("stats") or {}
    dd = {k: v for k, v in (stats.get("deliveries_dropped") or {}).items() if v}
    md = {k: v for k, v in (stats.get("messages_dropped") or {}).items() if v}
    if dd or md:
        notes.append(f"broker drops: deliveries {dd} messages {md}")
    rcv = res.get("receiver")
    if rcv is not None:
        expected = res["webhook"] and ("#" in res["webhook"].get("topics", []))
        t0 = lg.get("t_first_publish")
        span = (rcv["t_last"] - t0) if (t0 and rcv["events"]) else 0.0
        res["events"] = rcv["events"]
        res["events_per_s"] = round(rcv["events"] / span, 1) if span > 0 else 0.0
        res["event_span_s"] = round(span, 3)
        res["events_lost"] = (n - rcv["distinct"]) if expected else rcv["events"]
        res["receiver_cpu_s"] = round(rcv.get("cpu_s", 0.0), 3)
        if rcv["dups"] or rcv["foreign"] or rcv["bad"]:
            notes.append(f"receiver: dups {rcv['dups']}, foreign {rcv['foreign']}, bad bodies {rcv['bad']}")
        if res.get("events_stalled"):
            notes.append(f"webhook stalled: receiver got {rcv['events']} events of {n}")
        if not expected and rcv["events"]:
            notes.append(f"the unrelated webhook delivered {rcv['events']} events (expected none)")
        final = res.get("receiver_final")
        if final and final["events"] != rcv["events"]:
            notes.append(f"receiver got {final['events'] - rcv['events']} more events after the wait")
        wh = ((stats.get("webhooks") or {}).get("bench")) if stats else None
        if wh:
            res["webhook_stats"] = wh
            drops = {k: v for k, v in wh["dropped"].items() if v}
            res["webhook_dropped"] = sum(drops.values())
            if drops or wh["failed"] or wh["queuing"] or wh["inflight"]:
                notes.append(
                    f"webhook counters: matched {wh['matched']} success {wh['success']} failed {wh['failed']} "
                    f"dropped {drops} queuing {wh['queuing']} inflight {wh['inflight']}"
                )
            if wh.get("last_error"):
                notes.append(f"webhook last_error: {wh['last_error']}")
    if res.get("broker_exit") not in (0, None):
        notes.append(f"broker exit: {res['broker_exit']}")
    for line in res.get("broker_log_tail", [])[-3:]:
        notes.append(f"broker log: {line[:200]}")
    res["notes"] = notes


# =============================================================================================
# Report
# =============================================================================================


def fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def _rate(run: dict[str, Any] | None, key: str) -> float | None:
    if run is None or run["key"] != "baseline" or run.get("sub_lost"):
        return None  # a baseline that lost messages is no reference
    return run.get(key) or None


def paired_ratios(seq: list[dict[str, Any]]) -> None:
    """For each run: its msg/s (and broker CPU/msg) over the mean of the nearest baselines before
    and after it in the schedule. Baselines get the same against their neighbouring baselines:
    that is the noise floor of the run (1.000 on a quiet machine)."""
    for i, run in enumerate(seq):
        step = 2 if run["key"] == "baseline" else 1
        before = seq[i - step] if i - step >= 0 else None
        after = seq[i + step] if i + step < len(seq) else None
        for key, out in (("msg_per_s", "x_msg"), ("broker_cpu_us_per_msg", "x_cpu")):
            refs = [r for r in (_rate(before, key), _rate(after, key)) if r]
            value = run.get(key)
            run[out] = round(value / statistics.fmean(refs), 3) if refs and value else None


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's runs -> medians of rates and ratios, worst losses, every note."""
    row = dict(runs[0])
    for key in ("msg_per_s", "events_per_s", "broker_cpu_us_per_msg", "broker_cpu_share", "wall_s", "x_msg", "x_cpu"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        row[key] = statistics.median(vals) if vals else None
        if key == "x_msg":
            row["x_msg_range"] = f"{min(vals):.2f}-{max(vals):.2f}" if len(vals) > 1 else None
    for key in ("sub_lost", "events_lost", "webhook_dropped", "queue_max"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        row[key] = max(vals) if vals else None
    row["runs"] = len(runs)
    row["saturated_runs"] = sum(bool(r.get("saturated_seen")) for r in runs)
    row["notes"] = [note for r in runs for note in r["notes"]]
    row["per_run"] = [
        {
            k: r.get(k)
            for k in ("msg_per_s", "x_msg", "events_per_s", "broker_cpu_us_per_msg", "x_cpu", "sub_lost", "queue_max")
        }
        for r in runs
    ]
    if row["key"] == "baseline":  # the reference itself; its x range is the noise floor
        row["title"] = f"{row['title']} (x{len(runs)})"
        row["x_msg"] = row["x_cpu"] = 1.0
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "scenario",
        "msgs",
        "sub msg/s",
        "x base",
        "x range",
        "sub lost",
        "events/s",
        "ev lost",
        "hook drop",
        "queue max",
        "broker CPU us/msg",
        "x base",
        "core use",
        "wall s",
    )
    body = []
    for r in rows:
        hooked = r.get("webhook") is not None
        body.append(
            (
                r["title"],
                fmt(r["messages"]),
                fmt(r.get("msg_per_s")),
                fmt(r.get("x_msg"), ".3f"),
                fmt(r.get("x_msg_range")),
                fmt(r.get("sub_lost")),
                fmt(r.get("events_per_s")) if hooked else "-",
                fmt(r.get("events_lost")) if hooked else "-",
                fmt(r.get("webhook_dropped")) if hooked else "-",
                (fmt(r.get("queue_max")) + ("*" if r.get("saturated_runs") else "")) if hooked else "-",
                fmt(r.get("broker_cpu_us_per_msg"), ".2f"),
                fmt(r.get("x_cpu"), ".3f"),
                fmt(r.get("broker_cpu_share"), ".0%"),
                fmt(r.get("wall_s"), ".1f"),
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    # the first column is left-aligned, the numbers right-aligned
    fmt_line = "  ".join(("{:<%d}" if i == 0 else "{:>%d}") % w for i, w in enumerate(widths))
    out = [fmt_line.format(*head), fmt_line.format(*("-" * w for w in widths))]
    out.extend(fmt_line.format(*row) for row in body)
    return "\n".join(out)


def git_commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + (" (+ uncommitted changes in src/)" if dirty else "")


# =============================================================================================
# Main
# =============================================================================================


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="End-to-end webhook benchmark: broker throughput with/without a webhook, and webhook events/s"
    )
    p.add_argument("--messages", type=int, default=200_000, help="QoS 0 messages per scenario (default 200000)")
    p.add_argument(
        "--messages-b1", type=int, default=20_000, help="messages in the batch_size 1 scenario (default 20000)"
    )
    p.add_argument("--payload", type=int, default=64, help="payload bytes, >= 10 (default 64)")
    p.add_argument("--repeat", type=int, default=3, help="passes over the scenarios, interleaved (default 3)")
    p.add_argument(
        "--window", type=int, default=10_000, help="loadgen: max messages published and not received (0 = open loop)"
    )
    p.add_argument("--stall", type=float, default=10.0, help="seconds without progress that count as a stall")
    p.add_argument(
        "--stall-webhook",
        type=float,
        default=30.0,
        help="the same for the subscriber in scenarios 3-4, where backpressure may pause the publisher (default 30)",
    )
    p.add_argument("--scenario-timeout", type=float, default=90.0, help="hard cap per scenario run, seconds")
    p.add_argument(
        "--only", default="", help="comma-separated scenario keys: baseline,unrelated,batch1,batch100 (default all)"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=170.0,
        help="start no new scenario after this many seconds (the run ends on a baseline; default 170)",
    )
    p.add_argument("--json", metavar="FILE", help="write every figure and raw counter to FILE")
    args = p.parse_args(argv)
    if args.messages < 1 or args.messages_b1 < 1 or args.payload < 10 or args.repeat < 1:
        p.error("--messages, --messages-b1 and --repeat must be >= 1; --payload >= 10")
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["receiver"]:
        return receiver_main(argv[1:])
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: it may be ignored when run with &
        signal.signal(sig, _raise_interrupt)
    plan = scenarios(args)
    if args.only:
        keep = {k.strip() for k in args.only.split(",")}
        plan = [sc for sc in plan if sc["key"] in keep]
    seq_plan = schedule(plan, args.repeat)
    commit = git_commit()
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", os.path.relpath(__file__, ROOT), *argv])
    print(
        f"mqhook e2e webhook benchmark: {len(seq_plan)} broker runs ({args.repeat} passes, each scenario between "
        f"two baselines), {args.messages} msgs ({args.messages_b1} for batch_size 1), payload {args.payload} B, "
        f"QoS 0, window {args.window}, {os.cpu_count()} CPUs",
        flush=True,
    )
    children = Children()
    seq: list[dict[str, Any]] = []
    interrupted = False
    budget_hit = 0
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="mqhook-e2e-") as tmp:
            for i, sc in enumerate(seq_plan):
                if sc["key"] != "baseline" and time.monotonic() - t0 > args.budget:
                    budget_hit = i
                    break
                res = run_scenario(sc, args, Path(tmp), children, tag=f"{sc['key']}-{i}")
                seq.append(res)
                extra = f", {res['events_per_s']:,.0f} events/s" if res.get("events_per_s") else ""
                flag = f"  [{'; '.join(res['notes'])}]" if res["notes"] else ""
                print(
                    f"  [{i + 1:2}/{len(seq_plan)}] {sc['title']}: {res['msg_per_s']:,.0f} msg/s{extra}, "
                    f"broker CPU {fmt(res['broker_cpu_us_per_msg'], '.2f')} us/msg, wall {res['wall_s']} s{flag}",
                    flush=True,
                )
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping child processes; the table below is partial", file=sys.stderr)
    finally:
        children.stop_all()
    paired_ratios(seq)
    rows = [
        aggregate([r for r in seq if r["key"] == sc["key"]]) for sc in plan if any(r["key"] == sc["key"] for r in seq)
    ]
    print()
    print(table(rows) if rows else "no scenario completed")
    print()
    b1 = next((r for r in rows if r["key"] == "batch1"), None)
    if b1 is not None and b1["messages"] != args.messages:
        print(f"note: scenario 3 (batch_size 1) ran {b1['messages']} messages, not {args.messages} (--messages-b1)")
    print(
        "sub msg/s: messages received by the subscriber / (first publish -> last receipt).\n"
        "x base: that over the mean of the two baselines run just before and after (paired), median over the "
        "passes; x range: min-max of the paired ratios (for the baseline: each against its neighbour baselines, "
        "i.e. the noise floor).\n"
        "events/s: events received by the receiver / (first publish -> last event). ev lost: N - distinct "
        "events received; hook drop: the webhook's own dropped counters (/api/v1/stats).\n"
        "broker CPU: broker user+sys CPU from before the first publish to the last receipt/last event, per "
        "message; x base paired like msg/s. core use: broker CPU / that span (under ~90% in a broker-bound "
        "run = other processes took the broker's CPU).\n"
        "queue max: deepest webhook queue seen (sampled every 0.5 s); * = the webhook was saturated "
        "(publishers paused) in some run.\n"
        "Rates and ratios are medians over the runs of a scenario, losses and queue the worst run."
    )
    if budget_hit:
        print(f"note: --budget {args.budget:.0f} s reached: ran {budget_hit} of the {len(seq_plan)} planned runs")
    for r in rows:
        for note in dict.fromkeys(r["notes"]):
            print(f"  ! {r['title']}: {note}")
    print(f"total wall: {time.monotonic() - t0:.1f} s")
    print(f"command: {command}")
    if args.json:
        doc = {
            "command": command,
            "commit": commit,
            "interrupted": interrupted,
            "budget_reached_after_runs": budget_hit or None,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "params": vars(args),
            "summary": [
                {k: v for k, v in r.items() if k not in ("loadgen", "receiver", "stats", "config")} for r in rows
            ],
            "runs": seq,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    print(f"mqhook commit: {commit}")
    bad = any(r["notes"] for r in rows)
    return 130 if interrupted else (1 if bad else 0)


if __name__ == "__main__":
    sys.exit(main())
