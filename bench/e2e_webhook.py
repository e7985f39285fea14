"""End-to-end benchmark: what a webhook on ``message.publish`` costs the broker, and how fast it delivers.

Run from the project root::

    .venv/bin/python bench/e2e_webhook.py [--messages 200000] [--payload 64] [--json out.json]

Scenarios, each against a fresh ``mqhook run`` process, back to back in one run (see bench/README.md):

1. ``baseline``: no webhook; N QoS 0 publishes, 1 publisher -> 1 subscriber;
2. ``unrelated``: a webhook on ``message.publish`` for ``nobody/#`` only (should cost ~nothing);
3. ``batch1``: a webhook on every publish, ``batch_size`` 1 (``--messages-b1`` messages, fewer);
4. ``batch100``: the same with ``batch_size`` 100, ``batch_time`` "5ms", all N messages;
5. ``durable100``: scenario 4 with ``durable = true`` (``fsync = "interval"``, 10 ms group commit):
   the spool on disk beside the same webhook; the run prints its events/s over scenario 4's
   (the durable webhook must keep >= 50% of the memory one's rate);
6. ``durable100_always``: the same with ``fsync = "always"`` (a sync per loop turn, on the loop).

The machine is shared and noisy, so the figures that matter are ratios to the baseline of the same
run: every scenario runs between two baseline runs (B 2 B 3 B 4 B 2 B ...; ``--repeat`` passes) and
is divided by the mean of those two neighbours; the table shows the median of these paired ratios.

Built on the load-test harness (``mqhook.loadtest``, ``mqhook bench``): the broker is started with
``brokers.start_mqhook``, the load is one ``runner.Bench.run_once`` (its generator runs in this
process: 1 publisher, 1 subscriber, hand-built MQTT 3.1.1 on uvloop) and the webhook receiver is the
harness's sink in a child process (``runner.start_sink``). This script adds what is specific to
mqhook's webhooks: the config of each scenario, the ``/api/v1/stats`` queue sampling, the
interleaved baselines and the table.

Every wait is bounded (start-up, stall, the scenario's hard timeout, ``--budget``) and every child
is stopped in ``finally`` (SIGTERM, then SIGKILL); children also get SIGTERM if this process dies
(PR_SET_PDEATHSIG), and run in their own session so Ctrl-C reaches only this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from mqhook.loadtest import brokers, runner
from mqhook.loadtest.packets import MIN_PAYLOAD
from mqhook.loadtest.report import render
from mqhook.loadtest.rpc import Remote, RemoteError
from mqhook.loadtest.scenario import Scenario

ROOT = Path(__file__).resolve().parent.parent
# Raw material kept per run in --json, left out of the per-scenario summary.
RAW_KEYS = ("load", "receiver", "receiver_final", "stats", "config")
T = TypeVar("T")


# =============================================================================================
# The harness pieces, as this script (and e2e_metrics.py) use them
# =============================================================================================


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh uvloop (as ``mqhook bench`` does)."""
    return uvloop.run(coro)


def start_broker(config: Path) -> brokers.BrokerProcess:
    """A fresh ``mqhook run`` on free 127.0.0.1 ports with ``config``, log level warning."""
    return brokers.start_mqhook(["--config", str(config)])


def load(messages: int, payload: int, window: int, stall: float, timeout: float) -> Scenario:
    """The load of every run: 1 QoS 0 publisher -> 1 subscriber, ``messages`` as fast as possible,
    at most ``window`` published and not yet received."""
    return Scenario(pubs=1, subs=1, qos=0, payload=payload, count=messages, window=window, stall=stall, timeout=timeout)


async def measure(
    sc: Scenario, broker: brokers.BrokerProcess, sink: Remote | None = None, sink_expect: bool = True
) -> dict[str, Any]:
    """One harness run against ``broker`` (fresh connections and topics), with the sink if given."""
    target = runner.Target("mqhook", broker.host, broker.port, broker.pid)
    bench = runner.Bench(sc, [target], sink=sink, sink_expect=sink_expect)
    return await bench.run_once(target, 0, use_sink=sink is not None)


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
        {
            "key": "durable100",
            "title": '5 durable batch_size 100 fsync "interval"',
            "messages": args.messages,
            "webhook": {**hook, "topics": ["#"], "batch_size": 100, "batch_time": "5ms", "durable": True},
            "events_expected": args.messages,
        },
        {
            "key": "durable100_always",
            "title": '6 durable batch_size 100 fsync "always"',
            "messages": args.messages,
            "webhook": {
                **hook,
                "topics": ["#"],
                "batch_size": 100,
                "batch_time": "5ms",
                "durable": True,
                "fsync": "always",
            },
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


class QueueSampler(threading.Thread):
    """Reads the webhook's counters from /api/v1/stats every ``every`` seconds during a run, to see
    how deep its queue got and whether it was ever ``saturated`` (backpressure on the publisher).
    One small admin request per half second: negligible next to the load."""

    def __init__(self, broker: brokers.BrokerProcess, every: float = 0.5) -> None:
        super().__init__(name="queue-sampler", daemon=True)
        self.broker = broker
        self.every = every
        self.stopped = threading.Event()
        self.samples = 0
        self.max_queuing = 0
        self.saturated_samples = 0

    def run(self) -> None:
        while True:
            self.poll()
            if self.stopped.wait(self.every):
                return

    def poll(self) -> None:
        try:
            hook = self.broker.admin_json("/api/v1/stats", timeout=2.0)["webhooks"]["bench"]
        except (OSError, ValueError, KeyError):
            return
        self.samples += 1
        self.max_queuing = max(self.max_queuing, hook["queuing"])
        self.saturated_samples += bool(hook["saturated"])

    def stop(self) -> None:
        self.stopped.set()
        self.join(5.0)

    def summary(self) -> dict[str, int]:
        return {"samples": self.samples, "max_queuing": self.max_queuing, "saturated_samples": self.saturated_samples}


async def run_scenario(sc: dict[str, Any], args: argparse.Namespace, tmp: Path, tag: str) -> dict[str, Any]:
    """One broker run: [sink], broker with the scenario's config, the load, counters, stop."""
    t_start = time.monotonic()
    deadline = t_start + args.scenario_timeout
    n = sc["messages"]
    res: dict[str, Any] = {"key": sc["key"], "title": sc["title"], "messages": n, "webhook": sc["webhook"]}
    sink: Remote | None = None
    broker: brokers.BrokerProcess | None = None
    sampler: QueueSampler | None = None
    try:
        hook = dict(sc["webhook"]) if sc["webhook"] else None
        if hook is not None:
            sink, rport = await runner.start_sink(
                "127.0.0.1", 0, "message.publish", "auto", max_seconds=args.scenario_timeout + 60
            )
            hook = {"name": hook.pop("name"), "url": f"http://127.0.0.1:{rport}/hook", **hook}
        cfg = tmp / f"{sc['key']}-{tag}.toml"
        write_config(cfg, hook)
        res["config"] = cfg.read_text()
        broker = start_broker(cfg)
        # Under webhook backpressure the broker stops reading the publisher until the queue drains
        # from 80% to 50% of max_queued_events: the subscriber then sees nothing for a while.
        stall = args.stall_webhook if sc.get("events_expected") else args.stall
        load_sc = load(n, args.payload, args.window, stall, max(10.0, deadline - time.monotonic() - 5.0))
        if sc.get("events_expected"):
            sampler = QueueSampler(broker)
            sampler.start()
        run = await measure(load_sc, broker, sink, sink_expect=bool(sc.get("events_expected")))
        if sampler is not None:
            sampler.stop()
            res["queue_samples"] = sampler.summary()
        res["receiver"] = run.pop("sink", None)
        res["load"] = run
        try:
            res["stats"] = broker.admin_json("/api/v1/stats")
        except (OSError, ValueError) as exc:
            res["stats"] = None
            res.setdefault("errors", []).append(f"/api/v1/stats: {exc}")
        if sink is not None and res.get("stats") is not None:
            # Anything the broker sent after the snapshot (it should be nothing) would show here.
            res["receiver_final"] = await sink.call("snapshot", timeout=10)
    except (brokers.BrokerStartError, OSError, RemoteError, TimeoutError, ValueError) as exc:
        res.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")
    finally:
        if sampler is not None:
            sampler.stop()
        if broker is not None:
            alive = broker.proc.poll() is None
            rc = broker.stop(timeout=15.0)
            res["broker_exit"] = rc if alive else f"died early ({rc})"
            warnings = [line for line in broker.lines if "listening" not in line]
            if warnings:
                res["broker_log_tail"] = warnings[-10:]
        if sink is not None:
            with contextlib.suppress(Exception):
                await sink.call("stop", timeout=10)
            await sink.close()
    res["wall_s"] = round(time.monotonic() - t_start, 2)
    summarize(res)
    return res


def summarize(res: dict[str, Any]) -> None:
    """Derived figures: msg/s, events/s, losses, CPU per message, notes."""
    n = res["messages"]
    run = res.get("load") or {}
    notes: list[str] = list(res.get("errors", []))
    notes += [f"load: {e}" for e in run.get("errors", [])]
    rcv = res.get("receiver")
    # subscriber: received / (first publish -> last receipt); lost: by message id (publisher, sequence)
    res["msg_per_s"] = run.get("msgs_out_per_s") or 0.0
    res["sub_lost"] = n - (run.get("distinct") or 0)
    if run.get("stalled") and (run.get("drain_stalled") or not (rcv or {}).get("stalled")):
        notes.append(f"subscriber stalled: got {run.get('distinct', 0)}/{n}")
    if run.get("dups") or run.get("reordered") or run.get("foreign"):
        notes.append(f"subscriber: { {k: run.get(k) for k in ('dups', 'reordered', 'foreign')} }")
    cpu = run.get("broker_cpu_s")  # /proc, from just before the first publish to the end of the drain
    res["broker_cpu_s"] = cpu
    res["broker_cpu_us_per_msg"] = round(cpu / n * 1e6, 2) if cpu is not None and n else None
    span = max(run.get("elapsed_s") or 0.0, (rcv or {}).get("span_s") or 0.0)  # to the last receipt or event
    if cpu is not None and span > 0:
        # Share of one core the broker got while measured: well under 1.0 in a broker-bound
        # scenario means other processes on the machine took its CPU.
        res["broker_cpu_share"] = round(cpu / span, 2)
    samples = res.get("queue_samples") or {}
    res["queue_max"] = samples.get("max_queuing")
    res["saturated_seen"] = bool(samples.get("saturated_samples"))
    stats = res.get("stats") or {}
    dd = {k: v for k, v in (stats.get("deliveries_dropped") or {}).items() if v}
    md = {k: v for k, v in (stats.get("messages_dropped") or {}).items() if v}
    if dd or md:
        notes.append(f"broker drops: deliveries {dd} messages {md}")
    if rcv is not None:
        expected = bool(res["webhook"]) and ("#" in res["webhook"].get("topics", []))
        res["events"] = rcv["events"]
        # distinct events (by publisher and sequence number) / (first publish -> last event)
        res["events_per_s"] = rcv.get("distinct_per_s") or 0.0
        res["event_span_s"] = rcv.get("span_s")
        res["events_lost"] = (n - rcv["received"]) if expected else rcv["events"]
        res["receiver_cpu_s"] = rcv.get("process_cpu_s")
        odd = {k: rcv.get(k) for k in ("dup_seq", "dup_ids", "undecodable", "bad_bodies") if rcv.get(k)}
        if odd:
            notes.append(f"receiver: {odd}")
        if rcv.get("stalled"):
            notes.append(f"webhook stalled: receiver got {rcv['received']} events of {n}")
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
    return render([list(head), *([str(x) for x in row] for row in body)], left=1)


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


# (option, type, default, help); the help gets "(default ...)" unless the default is empty
OPTIONS: tuple[tuple[str, Any, Any, str], ...] = (
    ("--messages", int, 200_000, "QoS 0 messages per scenario"),
    ("--messages-b1", int, 20_000, "messages in the batch_size 1 scenario"),
    ("--payload", int, 64, f"payload bytes, >= {MIN_PAYLOAD}"),
    ("--repeat", int, 3, "passes over the scenarios, interleaved"),
    ("--window", int, 10_000, "max messages published and not yet received (0 = open loop)"),
    ("--stall", float, 10.0, "seconds without progress that count as a stall"),
    ("--stall-webhook", float, 30.0, "--stall in scenarios 3-4, where backpressure may pause the publisher"),
    ("--scenario-timeout", float, 90.0, "hard cap per scenario run, seconds"),
    (
        "--only",
        str,
        "",
        "comma-separated scenario keys: baseline,unrelated,batch1,batch100,durable100,durable100_always (default all)",
    ),
    ("--budget", float, 170.0, "start no new scenario after this many seconds (the run ends on a baseline)"),
    ("--json", str, None, "write every figure and raw counter to this file"),
)

METAVARS = {"--json": "FILE", "--only": "KEYS"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="End-to-end webhook benchmark: broker throughput with/without a webhook, and webhook events/s"
    )
    for flag, kind, default, text in OPTIONS:
        shown = f"{text} (default {default})" if default else text
        p.add_argument(flag, type=kind, default=default, metavar=METAVARS.get(flag), help=shown)
    args = p.parse_args(argv)
    if args.messages < 1 or args.messages_b1 < 1 or args.payload < MIN_PAYLOAD or args.repeat < 1:
        p.error(f"--messages, --messages-b1 and --repeat must be >= 1; --payload >= {MIN_PAYLOAD}")
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
        f"QoS 0, window {args.window}, {os.cpu_count()} CPUs; load: mqhook.loadtest in this process",
        flush=True,
    )
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
                res = run_async(run_scenario(sc, args, Path(tmp), tag=str(i)))
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
        print("\ninterrupted: child processes stopped; the table below is partial", file=sys.stderr)
    paired_ratios(seq)
    rows = [
        aggregate([r for r in seq if r["key"] == sc["key"]]) for sc in plan if any(r["key"] == sc["key"] for r in seq)
    ]
    print()
    print(table(rows) if rows else "no scenario completed")
    print()
    mem = next((r for r in rows if r["key"] == "batch100"), None)
    for key in ("durable100", "durable100_always"):
        dur = next((r for r in rows if r["key"] == key), None)
        if mem is not None and dur is not None and mem.get("events_per_s") and dur.get("events_per_s"):
            ratio = dur["events_per_s"] / mem["events_per_s"]
            print(f"{key} / batch100 events/s: {ratio:.2f} ({dur['events_per_s']:,.0f} / {mem['events_per_s']:,.0f})")
    b1 = next((r for r in rows if r["key"] == "batch1"), None)
    if b1 is not None and b1["messages"] != args.messages:
        print(f"note: scenario 3 (batch_size 1) ran {b1['messages']} messages, not {args.messages} (--messages-b1)")
    print(
        "sub msg/s: messages received by the subscriber / (first publish -> last receipt).\n"
        "x base: that over the mean of the two baselines run just before and after (paired), median over the "
        "passes; x range: min-max of the paired ratios (for the baseline: each against its neighbour baselines, "
        "i.e. the noise floor).\n"
        "events/s: distinct events received by the receiver / (first publish -> last event). ev lost: N - distinct "
        "events received (by message id: publisher and sequence number in the payload);\n"
        "hook drop: the webhook's own dropped counters (/api/v1/stats).\n"
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
            "summary": [{k: v for k, v in r.items() if k not in RAW_KEYS} for r in rows],
            "runs": seq,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    print(f"mqhook commit: {commit}")
    bad = any(r["notes"] for r in rows)
    return 130 if interrupted else (1 if bad else 0)


if __name__ == "__main__":
    sys.exit(main())
