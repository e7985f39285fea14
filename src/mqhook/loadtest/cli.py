"""``mqhook bench``: the command line of the load-test harness (see README.md in this package)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from mqhook.broker.settings import MqttConfig
from mqhook.loadtest.scenario import DEFAULT_COUNT, MODES, TOPOLOGIES, Scenario

if TYPE_CHECKING:
    from mqhook.loadtest.brokers import BrokerProcess
    from mqhook.loadtest.runner import Target

_MQTT_DEFAULTS = MqttConfig()

EPILOG = """\
examples:
  mqhook bench --start-mqhook --against mosquitto --pubs 4 --subs 1 --qos 0 --count 200000
  mqhook bench --port 1883 --broker-pid PID --pubs 1 --subs 10 --topology fan-out --rate 5000 --duration 30
  mqhook bench --port 1883 --mode conn-storm --connections 5000 --connect-rate 500
  mqhook bench --port 1883 --broker-pid PID --mode idle --connections 10000 --procs 2
  mqhook bench --sink --port 5000                      # a counting webhook receiver, alone
  mqhook bench --start-mqhook --sink-port 5000 --count 20000   # a run, with mqhook posting to the sink
  mqhook bench --start-mosquitto --port 1884           # mosquitto with the bench's fair config, until Ctrl-C
  mqhook bench --start-mqhook --against mosquitto --qos 1 --max-queued 10000000   # both with a 10M queue

The brokers the bench starts get the same window, queue and TCP_NODELAY unless told otherwise; the
header of the table states each one's settings ("unknown" for a broker it did not start) and which differ.

exit status: 0 = every run completed with nothing lost, duplicated or stalled; 1 = a run failed,
lost or duplicated something, or stalled (see the notes under the table); 2 = bad arguments; 130 = Ctrl-C.
"""


def parser() -> argparse.ArgumentParser:
    from mqhook.loadtest.brokers import mqhook_bounds

    p = argparse.ArgumentParser(
        prog="mqhook bench",
        description="Load-test an MQTT broker (MQTT 3.1.1, uvloop, hand-built packets), optionally against another "
        "broker, or receive webhooks and count them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("target")
    g.add_argument("--host", default="127.0.0.1", help="broker address (default 127.0.0.1)")
    g.add_argument(
        "--port",
        type=int,
        help="broker MQTT port (default 1883); with --sink: where the receiver "
        "listens (default 5000); with --start-mosquitto: mosquitto's port (default 1884)",
    )
    g.add_argument("--broker-pid", type=int, metavar="PID", help="broker process for CPU and RSS (/proc)")
    g.add_argument("--name", help="label of the target (default: mqhook with --start-mqhook, else target)")
    g.add_argument(
        "--start-mqhook",
        action="store_true",
        help="start a fresh `mqhook run` on free ports (log level warning) and measure it",
    )
    g.add_argument(
        "--mqhook-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the started mqhook, e.g. --mqhook-arg=--config=FILE (repeatable)",
    )
    g.add_argument(
        "--against",
        metavar="HOST:PORT|mosquitto",
        help="also run against this broker, alternating; 'mosquitto' starts one with the fair config",
    )
    g.add_argument("--against-pid", type=int, metavar="PID", help="the other broker's process for CPU and RSS")
    g.add_argument("--against-name", help="label of the other broker (default: mosquitto or other)")
    g.add_argument("--mosquitto", metavar="PATH", help="mosquitto binary (default /usr/sbin/mosquitto)")
    g.add_argument(
        "--mosquitto-option",
        action="append",
        default=[],
        metavar="LINE",
        help="a line appended to the started mosquitto's config, e.g. 'set_tcp_nodelay false' (repeatable; "
        "after --max-queued / --max-inflight, so it wins over them)",
    )
    g.add_argument(
        "--max-queued",
        type=int,
        metavar="N",
        help="messages queued per session on every broker the bench starts: mqhook mqtt.max_queued_messages "
        f"(through MQHOOK_MQTT__MAX_QUEUED_MESSAGES), mosquitto max_queued_messages (default: both "
        f"{_MQTT_DEFAULTS.max_queued_messages}, mqhook's default)",
    )
    g.add_argument(
        "--max-inflight",
        type=int,
        metavar="N",
        help="unacknowledged outbound QoS 1/2 messages per client on every broker the bench starts: mqhook "
        "mqtt.max_inflight (through MQHOOK_MQTT__MAX_INFLIGHT), mosquitto max_inflight_messages; 0 = unlimited "
        f"(mosquitto 0, mqhook its maximum, {mqhook_bounds('max_inflight')[1]}) "
        f"(default: both {_MQTT_DEFAULTS.max_inflight}, mqhook's default)",
    )
    g.add_argument("--repeat", type=int, help="runs per broker (default 3 with --against, else 1)")
    g.add_argument(
        "--start-mosquitto",
        action="store_true",
        help="only start mosquitto with the bench's config and wait for Ctrl-C (or --max-seconds)",
    )

    g = p.add_argument_group("scenario")
    g.add_argument("--mode", choices=MODES, default="pubsub")
    g.add_argument("--pubs", type=int, default=1, help="publishers (default 1)")
    g.add_argument("--subs", type=int, default=1, help="subscribers (default 1)")
    g.add_argument(
        "--topology",
        choices=TOPOLOGIES,
        default="fan-in",
        help="fan-in/fan-out: every subscriber gets every message; 1:1: subscriber i <- publisher i; "
        "shared: $share/bench/..., each message to one subscriber (default fan-in)",
    )
    g.add_argument("--qos", type=int, choices=(0, 1, 2), default=0)
    g.add_argument("--payload", type=int, default=64, help="payload bytes, at least 32 (default 64)")
    g.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="messages/s, all publishers together (0 = as fast as possible, the default)",
    )
    g.add_argument(
        "--count",
        type=int,
        help=f"messages, all publishers together (default {DEFAULT_COUNT:,} unless --duration is given)",
    )
    g.add_argument("--duration", type=float, help="seconds of publishing")
    g.add_argument(
        "--window",
        type=int,
        help="at most this many messages published and not yet received, "
        "0 = open loop (default 10000 for QoS 0, 1000 for QoS 1/2)",
    )
    g.add_argument(
        "--inflight",
        type=int,
        default=32,
        help="unacknowledged QoS 1/2 PUBLISHes per publisher (default 32 = mqhook's default receive_maximum)",
    )
    g.add_argument("--chunk", type=int, default=100, help="PUBLISH packets per socket write at most (default 100)")
    g.add_argument("--procs", type=int, default=1, help="generator processes (default 1)")
    g.add_argument("--stall", type=float, default=5.0, help="seconds without progress that end a wait (default 5)")
    g.add_argument("--timeout", type=float, help="hard cap of one run in seconds (default: expected length + 120)")
    g.add_argument("--connections", type=int, default=1000, help="conn-storm / idle: connections (default 1000)")
    g.add_argument("--connect-rate", type=float, default=0.0, help="conn-storm: connects/s (0 = as fast as possible)")
    g.add_argument("--concurrency", type=int, default=100, help="connects in progress at once (default 100)")
    g.add_argument("--hold", action="store_true", help="conn-storm: keep every connection open until the end")
    g.add_argument(
        "--hold-seconds",
        type=float,
        default=2.0,
        help="idle: seconds with every connection open before RSS is read (default 2)",
    )
    g.add_argument("--keepalive", type=int, default=60, help="MQTT keepalive of every connection (default 60)")

    g = p.add_argument_group("webhook receiver")
    g.add_argument("--sink", action="store_true", help="only run the receiver on --port (default 5000)")
    g.add_argument(
        "--sink-port",
        type=int,
        metavar="PORT",
        help="run the receiver during the run (0 = a free port); with --start-mqhook, mqhook gets a webhook to it",
    )
    g.add_argument("--sink-event", default="message.publish", help="event whose payload is tracked")
    g.add_argument(
        "--payload-encoding",
        choices=("auto", "plain", "base64"),
        default="auto",
        help="how the webhook encodes payloads (default: detected per event)",
    )
    g.add_argument(
        "--max-seconds",
        type=float,
        default=3600.0,
        help="--sink / --start-mosquitto: stop after this long (default 3600)",
    )

    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    g.add_argument("--plot", metavar="FILE.png", help="draw throughput over time and latency (needs matplotlib)")
    g.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="live line on stderr (auto: when stderr is a terminal)",
    )
    return p


def scenario_from(args: argparse.Namespace) -> Scenario:
    count = args.count if args.count is not None else (None if args.duration is not None else DEFAULT_COUNT)
    return Scenario(
        mode=args.mode,
        pubs=args.pubs,
        subs=args.subs,
        topology=args.topology,
        qos=args.qos,
        payload=args.payload,
        rate=args.rate,
        count=count,
        duration=args.duration,
        window=args.window,
        inflight=args.inflight,
        chunk=args.chunk,
        procs=args.procs,
        stall=args.stall,
        timeout=args.timeout,
        connections=args.connections,
        connect_rate=args.connect_rate,
        concurrency=args.concurrency,
        hold=args.hold,
        hold_seconds=args.hold_seconds,
        keepalive=args.keepalive,
    ).validate()


def _wait_for_signal(max_seconds: float) -> None:
    done = threading.Event()
    old = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        done.wait(max_seconds)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def check_limits(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--max-queued / --max-inflight: within mqhook's bounds, and for a broker the bench starts."""
    from mqhook.loadtest.brokers import mqhook_bounds

    if args.max_queued is None and args.max_inflight is None:
        return
    if not (args.start_mqhook or args.start_mosquitto or args.against == "mosquitto"):
        p.error(
            "--max-queued / --max-inflight set the brokers the bench starts (--start-mqhook, --against mosquitto, "
            "--start-mosquitto); a broker already running takes them from its own configuration"
        )
    if args.max_queued is not None:
        top = mqhook_bounds("max_queued_messages")[1]
        if args.max_queued == 0:
            p.error(
                f"--max-queued 0 cannot be the same on both brokers: mosquitto reads 0 as no maximum, mqhook as no "
                f"queue; for the largest queue give {top} (mqhook's maximum)"
            )
        if not 1 <= args.max_queued <= top:
            p.error(f"--max-queued must be from 1 to {top} (mqhook's bounds)")
    if args.max_inflight is not None:
        top = mqhook_bounds("max_inflight")[1]
        if not 0 <= args.max_inflight <= top:
            p.error(f"--max-inflight must be from 0 (unlimited) to {top}")


def limit_overrides(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """--max-inflight / --max-queued as the started mqhook's environment variables and the started
    mosquitto's config lines (before --mosquitto-option's, which therefore win over them)."""
    from mqhook.loadtest.brokers import MOSQUITTO_KEYS, MQHOOK_ENV, mqhook_bounds

    env: dict[str, str] = {}
    lines: list[str] = []
    if args.max_inflight is not None:
        # mqhook has no unlimited window: its maximum, every packet id, is the same thing
        env[MQHOOK_ENV["max_inflight"]] = str(args.max_inflight or mqhook_bounds("max_inflight")[1])
        lines.append(f"{MOSQUITTO_KEYS['max_inflight']} {args.max_inflight}")
    if args.max_queued is not None:
        env[MQHOOK_ENV["max_queued"]] = str(args.max_queued)
        lines.append(f"{MOSQUITTO_KEYS['max_queued']} {args.max_queued}")
    return env, lines


def _mosquitto_lines(args: argparse.Namespace) -> list[str]:
    return [*limit_overrides(args)[1], *args.mosquitto_option]


def _start_mosquitto_only(args: argparse.Namespace) -> int:
    from mqhook.loadtest import brokers

    lines = _mosquitto_lines(args)
    broker = brokers.start_mosquitto(args.mosquitto, args.port or 1884, extra=lines)
    try:
        print(f"mosquitto listening on 127.0.0.1:{broker.port} pid {broker.pid} (Ctrl-C to stop); config:", flush=True)
        print(brokers.mosquitto_config(broker.port, lines), flush=True)
        _wait_for_signal(args.max_seconds)
    finally:
        broker.stop()
    return 0


def _sink_only(args: argparse.Namespace, progress: bool) -> int:
    import uvloop

    from mqhook.loadtest import sink

    try:
        snap = uvloop.run(
            sink.serve_standalone(
                args.host,
                args.port if args.port is not None else 5000,
                args.sink_event,
                args.payload_encoding,
                args.max_seconds,
                progress,
            )
        )
    except OSError as exc:
        print(f"mqhook bench: the sink cannot listen: {exc}", file=sys.stderr)
        return 1
    print(sink.sink_summary(snap))
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(sink.dumps(snap) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    check_limits(p, args)
    progress = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty())
    if args.plot:
        from mqhook.loadtest.report import require_matplotlib

        require_matplotlib()
    if args.start_mosquitto:
        return _start_mosquitto_only(args)
    if args.sink:
        return _sink_only(args, progress)
    try:
        sc = scenario_from(args)
    except ValueError as exc:
        p.error(str(exc))
    repeat = args.repeat or (3 if args.against else 1)
    if repeat < 1:
        p.error("--repeat must be >= 1")
    return _bench(args, argv, sc, repeat, progress)


def start_targets(args: argparse.Namespace, sink_port: int | None, started: list[BrokerProcess]) -> list[Target]:
    """The brokers to measure, starting those the options ask for (appended to ``started`` as they
    start, for the caller to stop even when a later one fails), each with the settings the bench
    knows it has: --max-queued / --max-inflight reach every broker started here."""
    from mqhook.loadtest import brokers, runner

    other: tuple[str, int] | None = None
    if args.against and args.against != "mosquitto":
        host, _, port = args.against.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit("mqhook bench: --against wants HOST:PORT or 'mosquitto'")
        other = host.strip("[]"), int(port)
    env, _ = limit_overrides(args)
    if args.start_mqhook:
        extra = list(args.mqhook_arg)
        if sink_port is not None:
            extra += ["--webhook", f"bench=http://127.0.0.1:{sink_port}/"]
        b = brokers.start_mqhook(extra, env=env)
        started.append(b)
        settings = b.settings
        if settings is not None and args.max_inflight == 0 and settings["max_inflight"] == brokers.PACKET_IDS:
            settings = {**settings, "notes": {"max_inflight": "its maximum, for --max-inflight 0"}}
        target = runner.Target(args.name or "mqhook", b.host, b.port, b.pid, settings)
    else:
        target = runner.Target(args.name or "target", args.host, args.port or 1883, args.broker_pid)
    targets = [target]
    if args.against == "mosquitto":
        m = brokers.start_mosquitto(args.mosquitto, extra=_mosquitto_lines(args))
        started.append(m)
        targets.append(runner.Target(args.against_name or "mosquitto", "127.0.0.1", m.port, m.pid, m.settings))
    elif other is not None:
        targets.append(runner.Target(args.against_name or "other", *other, args.against_pid))
    if targets[0].name == targets[-1].name and len(targets) == 2:
        targets[1].name += "-2"
    return targets


def _bench(args: argparse.Namespace, argv: list[str], sc: Scenario, repeat: int, progress: bool) -> int:
    from mqhook.loadtest import brokers, report, rpc, runner

    started: list[brokers.BrokerProcess] = []
    try:
        sink_port = args.sink_port
        if sink_port == 0:
            sink_port = brokers.free_port()
        targets = start_targets(args, sink_port, started)
        print(
            f"mqhook bench: {sc.describe()}; "
            + ", ".join(f"{t.name} {t.address}" + (f" pid {t.pid}" if t.pid else "") for t in targets),
            *report.settings_lines([{"name": t.name, "settings": t.settings} for t in targets]),
            sep="\n",
            file=sys.stderr,
        )
        kwargs: dict[str, Any] = {"repeat": repeat, "progress": runner.Progress(progress)}
        if sink_port is not None:
            kwargs.update(sink_port=sink_port, sink_encoding=args.payload_encoding, sink_event=args.sink_event)
        result = runner.run(sc, targets, **kwargs)
    except KeyboardInterrupt:
        print("\nmqhook bench: interrupted", file=sys.stderr)
        return 130
    except (OSError, rpc.RemoteError) as exc:
        print(f"mqhook bench: {exc}", file=sys.stderr)
        return 1
    finally:
        for b in reversed(started):
            b.stop()
    print(report.table(result))
    if args.json:
        report.write_json(result, args.json, argv)
    if args.plot:
        report.plot(result, args.plot)
    return 1 if any(_bad(r) for r in result["runs"]) else 0


def _bad(run: dict[str, Any]) -> bool:
    """A run that failed, lost, duplicated, stalled or had errors (the exit status is then 1)."""
    if run.get("aborted") or run.get("errors") or run.get("stalled"):
        return True
    if run["mode"] == "pubsub":
        sink = run.get("sink") or {}
        return bool(run["lost"] or run["dups"] or sink.get("lost") or sink.get("dup_ids") or sink.get("stalled"))
    return bool(run["failed"])
