"""End-to-end benchmark: what scraping ``GET /metrics`` every second costs broker QoS 0 throughput.

Run from the project root::

    .venv/bin/python bench/e2e_metrics.py [--messages 600000] [--repeat 3] [--webhooks 10] [--json out.json]

One ``mqhook run`` process (its config holds ``--webhooks`` idle webhooks on ``nobody/#``, so a
scrape formats as many series as a real deployment with that many webhooks) serves every run.
Each run is one run of the load-test harness (``mqhook.loadtest``, in this process: 1 QoS 0
publisher -> 1 subscriber, N messages, fresh connections and topics); in a *scraped* run a thread
also GETs ``/metrics`` every ``--interval`` seconds for as long as the load runs, like a Prometheus
with ``scrape_interval: 1s``. Runs go in ABBA order
(A = not scraped, B = scraped; ``--repeat`` times), so slow drift of a shared machine cancels;
each neighbouring A/B pair gives one ratio of B's msg/s to A's, and the report shows their median,
range and the ratio of the means. The same is done for broker CPU per message.

A second, steadier figure: the broker's CPU per scrape, measured on the idle broker (``--probe``
scrapes back to back, minus the CPU of the same wall time without scrapes). At one scrape per
second that CPU is the share of the broker's core the scrapes take.

The broker, the load and the clean-up come from ``e2e_webhook.py``, i.e. from the harness
(bounded waits, SIGTERM then SIGKILL, ``PR_SET_PDEATHSIG``); see bench/README.md.

Results (measured with the generator this script used before the harness, ``bench/loadgen.py``,
same meaning of every figure; 2 vCPU AMD EPYC, shared with other work, Python 3.11.7, uvloop 0.23.0, prometheus_client
0.26.0; default options: 600000 msgs of 64 B, 10 webhooks, one scrape per second):

- idle broker: 12.05 and 12.25 ms CPU per scrape of 58.9 KB = 1.2% of a core at 1 scrape/s
  (``--webhooks 1``: 3.85 ms, 0.39%; ``--webhooks 0``: 1.8 ms, 0.18%);
- throughput scraped/not: median of paired ratios 1.031 (6 pairs, 0.69-1.14; ratio of means
  0.943) and 1.145 with ``--repeat 4`` (8 pairs, 0.75-1.52; ratio of means 1.088). Runs of the
  same kind vary by 20-50% on this machine, so this ratio cannot resolve a cost of a few
  percent; the CPU per scrape bounds it;
- a scrape during the flood waited ~0.8 s on average for the broker's loop (the publisher's reads
  hold it, bench/README.md finding 1): ``mqhook_event_loop_lag_max_seconds`` read 0.66 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mqhook.loadtest.brokers import BrokerProcess
from mqhook.loadtest.packets import MIN_PAYLOAD

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_webhook import _raise_interrupt, git_commit, load, measure, run_async, start_broker


class Scraper(threading.Thread):
    """GET ``url`` every ``interval`` seconds until stopped; records how long each took."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(name="scraper", daemon=True)
        self.url = url
        self.interval = interval
        self.stopped = threading.Event()
        self.durations: list[float] = []
        self.bytes = 0
        self.errors = 0

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stopped.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=5.0) as resp:
                    self.bytes = len(resp.read())
                self.durations.append(time.monotonic() - t0)
            except (OSError, urllib.error.URLError):
                self.errors += 1
            next_at += self.interval
            self.stopped.wait(max(0.0, next_at - time.monotonic()))


def write_config(path: Path, webhooks: int) -> None:
    lines = ['node = "bench@127.0.0.1"']
    for i in range(webhooks):
        lines += ["[[webhooks]]", f'name = "idle-{i}"', 'url = "http://127.0.0.1:9/"', 'topics = ["nobody/#"]']
        lines.append('events = ["message.publish"]')
    path.write_text("\n".join(lines) + "\n")


def one_run(broker: BrokerProcess, args: argparse.Namespace, scraped: bool) -> dict[str, Any]:
    scraper = Scraper(f"http://{broker.admin}/metrics", args.interval) if scraped else None
    sc = load(args.messages, args.payload, args.window, stall=10.0, timeout=args.run_timeout)
    cpu0 = broker.cpu_seconds() or 0.0
    if scraper:
        scraper.start()
    try:
        run = run_async(measure(sc, broker))
    finally:
        if scraper:
            scraper.stopped.set()
            scraper.join(10)
    cpu = (broker.cpu_seconds() or 0.0) - cpu0
    # msg/s: received / (first publish -> last receipt); lost: by message id, of all N
    res: dict[str, Any] = {"scraped": scraped, "load": run, "msg_per_s": run.get("msgs_out_per_s") or 0.0}
    res["lost"] = args.messages - (run.get("distinct") or 0)
    res["errors"] = run.get("errors", [])
    res["broker_cpu_s"] = round(cpu, 3)
    res["cpu_us_per_msg"] = round(cpu / args.messages * 1e6, 3)
    if scraper:
        res["scrapes"] = len(scraper.durations)
        res["scrape_errors"] = scraper.errors
        res["scrape_ms_mean"] = round(statistics.fmean(scraper.durations) * 1e3, 2) if scraper.durations else None
        res["scrape_bytes"] = scraper.bytes
    return res


def probe_scrape_cpu(broker: BrokerProcess, n: int) -> dict[str, Any]:
    """Broker CPU per scrape on the idle broker: n scrapes back to back, minus idle CPU for as long."""
    url = f"http://{broker.admin}/metrics"
    cpu0, t0 = broker.cpu_seconds() or 0.0, time.monotonic()
    size = 0
    for _ in range(n):
        with urllib.request.urlopen(url, timeout=5.0) as resp:
            size = len(resp.read())
    busy_cpu, wall = (broker.cpu_seconds() or 0.0) - cpu0, time.monotonic() - t0
    cpu1 = broker.cpu_seconds() or 0.0
    time.sleep(max(wall, 1.0))
    idle_cpu = ((broker.cpu_seconds() or 0.0) - cpu1) * wall / max(wall, 1.0)
    per = max(0.0, busy_cpu - idle_cpu) / n
    return {"scrapes": n, "bytes": size, "cpu_ms_per_scrape": round(per * 1e3, 3), "wall_ms": round(wall * 1e3)}


def pair_ratios(runs: list[dict[str, Any]], key: str) -> list[float]:
    """B/A for each neighbouring pair of the ABBA sequence (runs 0-1, 2-3, ...)."""
    out = []
    for a, b in zip(runs[0::2], runs[1::2], strict=False):
        base, scraped = (a, b) if not a["scraped"] else (b, a)
        if base.get(key) and scraped.get(key):
            out.append(scraped[key] / base[key])
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Broker QoS 0 throughput with /metrics scraped every second vs not")
    p.add_argument("--messages", type=int, default=600_000, help="QoS 0 messages per run (default 600000)")
    p.add_argument("--payload", type=int, default=64, help=f"payload bytes, >= {MIN_PAYLOAD} (default 64)")
    p.add_argument("--repeat", type=int, default=3, help="ABBA blocks (default 3: 12 runs)")
    p.add_argument("--webhooks", type=int, default=10, help="idle webhooks configured (series per scrape)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes (default 1)")
    p.add_argument("--window", type=int, default=10_000, help="max messages in flight (default 10000)")
    p.add_argument("--probe", type=int, default=200, help="back-to-back scrapes for the CPU-per-scrape figure")
    p.add_argument("--run-timeout", type=float, default=60.0, help="hard cap per run, seconds")
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    args = p.parse_args(argv)
    if args.messages < 1 or args.payload < MIN_PAYLOAD or args.repeat < 1 or args.interval <= 0:
        p.error(f"--messages, --repeat >= 1; --payload >= {MIN_PAYLOAD}; --interval > 0")
    return args


def report(runs: list[dict[str, Any]], probe: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    base = [r for r in runs if not r["scraped"]]
    scraped = [r for r in runs if r["scraped"]]
    x_msg = pair_ratios(runs, "msg_per_s")
    x_cpu = pair_ratios(runs, "cpu_us_per_msg")
    summary = {
        "runs": len(runs),
        "base_msg_per_s": [r["msg_per_s"] for r in base],
        "scraped_msg_per_s": [r["msg_per_s"] for r in scraped],
        "pair_ratios_msg": [round(x, 4) for x in x_msg],
        "median_ratio_msg": round(statistics.median(x_msg), 4) if x_msg else None,
        "ratio_of_means_msg": (
            round(statistics.fmean(r["msg_per_s"] for r in scraped) / statistics.fmean(r["msg_per_s"] for r in base), 4)
            if base and scraped
            else None
        ),
        "pair_ratios_cpu_per_msg": [round(x, 4) for x in x_cpu],
        "median_ratio_cpu_per_msg": round(statistics.median(x_cpu), 4) if x_cpu else None,
        "scrapes_per_run": [r.get("scrapes") for r in scraped],
        "scrape_ms_mean": [r.get("scrape_ms_mean") for r in scraped],
        "probe": probe,
        "probe_cost_at_interval": round(probe["cpu_ms_per_scrape"] / (args.interval * 1e3), 5),
        "lost": sum(r.get("lost") or 0 for r in runs),
    }
    for r in runs:
        tag = "scraped" if r["scraped"] else "base   "
        extra = f", {r['scrapes']} scrapes of {r['scrape_ms_mean']} ms" if r["scraped"] else ""
        print(f"  {tag} {r['msg_per_s']:>10,.0f} msg/s  {r['cpu_us_per_msg']:6.2f} us CPU/msg  lost {r['lost']}{extra}")
    print()
    print(f"throughput scraped/not, per ABBA pair: {summary['pair_ratios_msg']}")
    print(f"  median {summary['median_ratio_msg']}, ratio of means {summary['ratio_of_means_msg']}")
    print(f"broker CPU/msg scraped/not, per pair: {summary['pair_ratios_cpu_per_msg']}")
    print(f"  median {summary['median_ratio_cpu_per_msg']}")
    print(
        f"idle broker: {probe['cpu_ms_per_scrape']} ms CPU per scrape of {probe['bytes']:,} bytes "
        f"({args.webhooks} webhooks) = {summary['probe_cost_at_interval']:.3%} of a core at one scrape "
        f"per {args.interval:g} s"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    order = [False, True, True, False] * args.repeat
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/e2e_metrics.py", *argv])
    print(
        f"mqhook /metrics scrape cost: {len(order)} runs (ABBA x{args.repeat}), {args.messages} QoS 0 msgs of "
        f"{args.payload} B, {args.webhooks} webhooks, scrape every {args.interval:g} s, {os.cpu_count()} CPUs",
        flush=True,
    )
    broker: BrokerProcess | None = None
    runs: list[dict[str, Any]] = []
    probe: dict[str, Any] = {}
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="mqhook-metrics-") as tmp:
            cfg = Path(tmp) / "broker.toml"
            write_config(cfg, args.webhooks)
            broker = start_broker(cfg)
            time.sleep(1.0)  # let start-up settle before the idle probe
            probe = probe_scrape_cpu(broker, args.probe)
            for scraped in order:
                runs.append(one_run(broker, args, scraped))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping child processes", file=sys.stderr)
        return 130
    finally:
        if broker is not None:
            broker.stop(timeout=15.0)
    summary = report(runs, probe, args)
    print(f"total wall: {time.monotonic() - t0:.1f} s\ncommand: {command}\nmqhook commit: {git_commit()}")
    if args.json:
        doc = {"command": command, "commit": git_commit(), "params": vars(args), "summary": summary, "runs": runs}
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 1 if summary["lost"] or any(r["errors"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
