"""Turning the workers' raw counts into a run's figures, and runs into medians and ratios.

Pure functions on plain data (what the workers return), so they are tested without sockets.
The keys of the dictionaries built here are the JSON keys documented in ``README.md``.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from mqhook.loadtest.scenario import Scenario
from mqhook.loadtest.stats import Histogram, loss_and_dups, timeline_merge

# Figures compared across brokers: (key, higher is better).
PUBSUB_KEYS = (
    ("msgs_in_per_s", True),
    ("msgs_out_per_s", True),
    ("latency_p50_ms", False),
    ("latency_p90_ms", False),
    ("latency_p99_ms", False),
    ("latency_p99_9_ms", False),
    ("lost", False),
    ("dups", False),
    ("broker_cpu_s_per_million", False),
    ("broker_rss_kb", False),
)
CONN_KEYS = (
    ("ok", True),
    ("failed", False),
    ("connects_per_s", True),
    ("latency_p50_ms", False),
    ("latency_p90_ms", False),
    ("latency_p99_ms", False),
    ("latency_p99_9_ms", False),
    ("broker_cpu_ms_per_connect", False),
    ("broker_rss_kb", False),
    ("rss_per_connection_kb", False),
)


def scenario_dict(sc: Scenario) -> dict[str, Any]:
    out = dataclasses.asdict(sc)
    out["effective_window"] = sc.effective_window
    out["inject_skip"] = list(sc.inject_skip)
    out["inject_dup"] = list(sc.inject_dup)
    return out


def _rate(n: int, seconds: float) -> float | None:
    return round(n / seconds, 1) if n and seconds > 0 else None


def _delta(a: Any, b: Any) -> Any:
    return None if a is None or b is None else round(b - a, 3)


def _flat_latency(res: dict[str, Any], lat: dict[str, Any]) -> None:
    res["latency_ms"] = lat
    for key in ("p50", "p90", "p99", "p99_9"):
        res[f"latency_{key}_ms"] = lat.get(key)


def _groups(sc: Scenario, sent: dict[int, int], subs: list[dict[str, Any]]) -> list[tuple[dict[int, int], list[Any]]]:
    """(publishers a copy is expected from, the receivers that share that copy)."""
    if sc.topology == "shared":
        return [(sent, [s["bitmaps"] for s in subs])] if subs else []
    out = []
    for s in subs:
        sources = sc.sub_sources(s["index"])
        exp = sent if sources is None else {p: sent.get(p, 0) for p in sources}
        out.append((exp, [s["bitmaps"]]))
    return out


def merge_pubsub(
    sc: Scenario,
    pubs: list[dict[str, Any]],
    finals: list[dict[str, Any]],
    t_start: float,
    before: dict[str, Any],
    after: dict[str, Any],
    sink: dict[str, Any] | None = None,
    sink_expect: bool = True,
) -> dict[str, Any]:
    """The figures of one pub/sub run (see the module docstring of ``runner`` for the phases)."""
    sent = {r["pub"]: r["sent"] for r in pubs}
    published = sum(sent.values())
    subs = sorted((s for f in finals for s in f["subs"]), key=lambda s: s["index"])
    expected = distinct = lost = cross = unexpected = 0
    for exp, maps in _groups(sc, sent, subs):
        acc = loss_and_dups(exp, maps)
        expected += acc["expected"]
        distinct += acc["distinct"]
        lost += acc["lost"]
        cross += acc["cross_dups"]
        unexpected += acc["unexpected"]
    received = sum(s["received"] for s in subs)
    hist = Histogram()
    for f in finals:
        hist.merge(f["hist"])
    t_last_send = max((r["t_last"] for r in pubs), default=0.0)
    t_last_recv = max((s["t_last"] for s in subs), default=0.0)
    publish_s = max(0.0, t_last_send - t_start)
    elapsed_s = max(0.0, t_last_recv - t_start, publish_s)
    broker_cpu = _delta(before.get("cpu_s"), after.get("cpu_s"))
    gen_cpu = sum(f["cpu_s"] for f in finals)
    errors = [r["error"] for r in pubs if r["error"]] + [s["lost_reason"] for s in subs if s["lost_reason"]]
    for f in finals:
        errors += f["errors"]
    res: dict[str, Any] = {
        "published": published,
        "packets_sent": sum(r["packets"] for r in pubs),
        "acked": sum(r["acked"] for r in pubs) if sc.qos else None,
        "unacked": sum(r["unacked"] for r in pubs),
        "expected": expected,
        "received": received,
        "distinct": distinct,
        "lost": lost,
        "dups": sum(s["dups"] for s in subs) + cross,
        "reordered": sum(s["reordered"] for s in subs),
        "foreign": sum(s["foreign"] for s in subs) + unexpected,
        "publish_s": round(publish_s, 4),
        "elapsed_s": round(elapsed_s, 4),
        "msgs_in_per_s": _rate(published, publish_s),
        "msgs_out_per_s": _rate(received, t_last_recv - t_start),
        "broker_cpu_s": broker_cpu,
        "broker_cpu_s_per_million": round(broker_cpu / published * 1e6, 3)
        if broker_cpu is not None and published
        else None,
        "broker_rss_kb_before": before.get("rss_kb"),
        "broker_rss_kb": after.get("rss_kb"),
        "broker_hwm_kb": after.get("hwm_kb"),
        "generator_cpu_s": round(gen_cpu, 3),
        "generator_cpu_s_per_million": round(gen_cpu / published * 1e6, 3) if published else None,
        # share of one core, from the first publish to the last receipt (generator: per process)
        "broker_core_use": round(broker_cpu / elapsed_s, 3) if broker_cpu is not None and elapsed_s else None,
        "generator_core_use": round(gen_cpu / elapsed_s / sc.procs, 3) if elapsed_s else None,
        "timeline_in": timeline_merge(f["timeline_in"] for f in finals),
        "timeline_out": timeline_merge(f["timeline_out"] for f in finals),
        "latency_buckets_us": hist.sparse(),
        "stalled": any(r["stalled"] for r in pubs),
        "errors": errors,
    }
    _flat_latency(res, hist.summary_ms())
    if sink is not None:
        res["sink"] = sink_figures(sink, sent, t_start, sink_expect)
    return res


def sink_figures(snap: dict[str, Any], sent: dict[int, int], t_start: float, expect: bool = True) -> dict[str, Any]:
    """The sink's counts against what the run published (``expect``: one tracked event per
    publish; else none, and ``expected`` and ``lost`` are 0).

    ``received`` = distinct published messages it got an event for (by publisher and sequence
    number); ``span_s`` = first publish -> last event; ``events_per_s`` = tracked events / span,
    ``distinct_per_s`` = received / span (the same unless the sink got duplicates).
    """
    per_pub = {int(k): v for k, v in snap.get("per_publisher", {}).items()}
    got = sum(min(per_pub.get(p, 0), n) for p, n in sent.items())
    out = {k: v for k, v in snap.items() if k not in ("hist", "timeline", "per_publisher")}
    out["expected"] = sum(sent.values()) if expect else 0
    out["received"] = got
    out["lost"] = max(0, out["expected"] - got)
    span = snap.get("t_last", 0.0) - t_start if snap.get("events") else 0.0
    out["span_s"] = round(span, 4) if span > 0 else None
    out["events_per_s"] = _rate(snap.get("tracked", 0), span)
    out["distinct_per_s"] = _rate(got, span)
    if "hist" in snap:
        out["latency_buckets_us"] = Histogram(snap["hist"]).sparse()
    return out


def merge_connections(
    sc: Scenario,
    parts: list[dict[str, Any]],
    finals: list[dict[str, Any]],
    t_start: float,
    before: dict[str, Any],
    opened: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """Figures of a conn-storm or idle run."""
    connack, tcp = Histogram(), Histogram()
    failures: dict[str, int] = {}
    for p in parts:
        connack.merge(p["connack_hist"])
        tcp.merge(p["tcp_hist"])
        for k, v in p["failures"].items():
            failures[k] = failures.get(k, 0) + v
    ok = connack.total
    held = sum(f["held"] for f in finals)  # connections open when RSS was read
    t_last = max((p["t_last"] for p in parts), default=0.0)
    cpu = _delta(before.get("cpu_s"), opened.get("cpu_s"))
    rss0, rss1 = before.get("rss_kb"), after.get("rss_kb")
    res: dict[str, Any] = {
        "attempted": sum(p["attempted"] for p in parts),
        "ok": ok,
        "failed": sum(failures.values()),
        "failures": failures,
        "open_s": round(max(0.0, t_last - t_start), 4),
        "connects_per_s": _rate(ok, t_last - t_start),
        "tcp_connect_ms": tcp.summary_ms(),
        "broker_cpu_s": cpu,
        "broker_cpu_ms_per_connect": round(cpu / ok * 1e3, 4) if cpu is not None and ok else None,
        "broker_rss_kb_before": rss0,
        "broker_rss_kb": rss1,
        "broker_hwm_kb": after.get("hwm_kb"),
        "rss_per_connection_kb": round((rss1 - rss0) / ok, 2)
        if held and rss0 is not None and rss1 is not None
        else None,
        "held": held,
        "generator_cpu_s": round(sum(f["cpu_s"] for f in finals), 3),
        "latency_buckets_us": connack.sparse(),
        "stalled": False,
        "errors": [e for f in finals for e in f["errors"]],
    }
    _flat_latency(res, connack.summary_ms())
    return res


def summarize(runs: list[dict[str, Any]], names: list[str], mode: str) -> dict[str, Any]:
    """Per broker: the median of each compared figure over its runs; and target / other."""
    keys = PUBSUB_KEYS if mode == "pubsub" else CONN_KEYS
    medians: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [r for r in runs if r["broker"] == name and not r.get("aborted")]
        row: dict[str, Any] = {"runs": len(mine), "stalled_runs": sum(1 for r in mine if r.get("stalled"))}
        for key, _ in keys:
            values = [r[key] for r in mine if r.get(key) is not None]
            row[key] = round(statistics.median(values), 4) if values else None
        medians[name] = row
    out: dict[str, Any] = {"medians": medians}
    if len(names) == 2:
        a, b = medians[names[0]], medians[names[1]]
        out["ratio_of"] = f"{names[0]} / {names[1]}"
        out["ratio"] = {
            key: (round(a[key] / b[key], 3) if a.get(key) is not None and b.get(key) else None) for key, _ in keys
        }
    return out


def one_line(res: dict[str, Any], repeat: int) -> str:
    """The line printed when a run ends."""
    head = f"{res['broker']} run {res['run']}/{repeat}:"
    if res.get("aborted"):
        return f"{head} FAILED {'; '.join(res['errors'])}"
    if res["mode"] == "pubsub":
        text = (
            f"{head} in {res['msgs_in_per_s'] or 0:,.0f}/s out {res['msgs_out_per_s'] or 0:,.0f}/s "
            f"p50 {res['latency_p50_ms']} ms p99 {res['latency_p99_ms']} ms "
            f"lost {res['lost']:,} dups {res['dups']:,}"
        )
        if res.get("stalled"):
            text += " (stalled)"
    else:
        text = (
            f"{head} {res['ok']:,} ok {res['failed']:,} failed, {res['connects_per_s'] or 0:,.0f} connects/s, "
            f"CONNACK p50 {res['latency_p50_ms']} ms p99 {res['latency_p99_ms']} ms"
        )
        if res.get("rss_per_connection_kb") is not None:
            text += f", {res['rss_per_connection_kb']} kB RSS per connection"
    if res.get("errors"):
        text += f" errors: {'; '.join(res['errors'][:3])}"
    return text
