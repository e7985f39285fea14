"""Output of ``mqhook bench``: the end table, ``--json`` and ``--plot`` (matplotlib, lazily)."""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
from pathlib import Path
from typing import Any

from mqhook import __version__
from mqhook.loadtest.brokers import SETTINGS, format_setting, settings_differ

PLOT_HINT = "mqhook bench: --plot needs matplotlib, which is not installed: pip install matplotlib"

# (key, header, format): format "int", "rate", "ms", "mb", "f3"
PUBSUB_COLUMNS = (
    ("msgs_in_per_s", "msg/s in", "rate"),
    ("msgs_out_per_s", "msg/s out", "rate"),
    ("latency_p50_ms", "p50 ms", "ms"),
    ("latency_p90_ms", "p90 ms", "ms"),
    ("latency_p99_ms", "p99 ms", "ms"),
    ("latency_p99_9_ms", "p99.9 ms", "ms"),
    ("lost", "lost", "int"),
    ("dups", "dups", "int"),
    ("broker_cpu_s_per_million", "CPU s/M msgs", "f3"),
    ("broker_rss_kb", "RSS MB", "mb"),
    ("generator_cpu_s_per_million", "gen s/M", "f3"),
)
CONN_COLUMNS = (
    ("ok", "ok", "int"),
    ("failed", "failed", "int"),
    ("connects_per_s", "connects/s", "rate"),
    ("latency_p50_ms", "p50 ms", "ms"),
    ("latency_p90_ms", "p90 ms", "ms"),
    ("latency_p99_ms", "p99 ms", "ms"),
    ("latency_p99_9_ms", "p99.9 ms", "ms"),
    ("broker_cpu_ms_per_connect", "CPU ms/conn", "f3"),
    ("broker_rss_kb", "RSS MB", "mb"),
    ("rss_per_connection_kb", "kB/conn", "f3"),
)


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "mb":
        return f"{value / 1024:,.1f}"
    if kind == "ratio":
        return f"{value:.3g}x"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def render(rows: list[list[str]], left: int = 2) -> str:
    """A plain text table: the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def table(result: dict[str, Any]) -> str:
    """The end-of-bench text: every run, then medians and the ratio when there are two brokers."""
    mode = result["scenario"]["mode"]
    cols = PUBSUB_COLUMNS if mode == "pubsub" else CONN_COLUMNS
    rows = [["broker", "run", *(h for _, h, _ in cols)]]
    for r in result["runs"]:
        name = f"{r['broker']} {r['address']}"
        if r.get("aborted"):
            rows.append([name, str(r["run"]), "FAILED", *([""] * (len(cols) - 1))])
            continue
        rows.append([name, str(r["run"]), *(_fmt(r.get(k), f) for k, _, f in cols)])
    summary = result["summary"]
    if result["repeat"] > 1 or len(result["targets"]) > 1:
        for name, med in summary["medians"].items():
            rows.append([f"median {name}", str(med["runs"]), *(_fmt(med.get(k), f) for k, _, f in cols)])
    if "ratio" in summary:
        ratio = summary["ratio"]
        rows.append([f"ratio {summary['ratio_of']}", "", *(_fmt(ratio.get(k), "ratio") for k, _, _ in cols)])
    lines = [f"mqhook bench: {result['description']}", *settings_lines(result["targets"]), "", render(rows)]
    notes = _notes(result)
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def settings_lines(targets: list[dict[str, Any]]) -> list[str]:
    """The header's ``settings:`` line (each broker's window, queue and TCP_NODELAY, or unknown for a
    broker the bench did not start) and, when two brokers' settings differ, a ``differs:`` line."""
    parts = []
    for t in targets:
        s = t.get("settings")
        if s is None:
            parts.append(f"{t['name']} unknown (not started by the bench)")
            continue
        notes = s.get("notes") or {}
        items = []
        for key in SETTINGS:
            item = f"{key} {format_setting(key, s.get(key))}"
            items.append(f"{item} ({notes[key]})" if key in notes else item)
        parts.append(f"{t['name']} " + ", ".join(items))
    lines = ["settings: " + " | ".join(parts)]
    differ = settings_differ([(t["name"], t.get("settings")) for t in targets]) if len(targets) > 1 else None
    if differ:
        lines.append(
            "differs: "
            + "; ".join(
                f"{d['setting']} ("
                + ", ".join(f"{name} {format_setting(d['setting'], v)}" for name, v in d["values"].items())
                + ")"
                for d in differ
            )
        )
    return lines


def _notes(result: dict[str, Any]) -> list[str]:
    out = []
    if result["scenario"]["mode"] == "pubsub":
        out.append(
            "msg/s in: published / (first to last publish); msg/s out: received / (first publish to last receipt); "
            "latency: publish -> subscriber receipt; CPU s/M msgs: broker CPU seconds per million published "
            "(from /proc, needs --broker-pid / --against-pid or a broker started by the bench); gen s/M: the same "
            "for the load generator's own processes."
        )
    else:
        out.append("latency: CONNECT -> CONNACK; CPU ms/conn: broker CPU per successful connect (from /proc).")
    for r in result["runs"]:
        sink = r.get("sink")
        if sink:
            lat = sink.get("latency_ms", {})
            out.append(
                f"sink ({r['broker']} run {r['run']}): {sink.get('tracked', 0):,} {sink.get('track_event')} events, "
                f"{sink.get('events_per_s') or 0:,.0f}/s, lost {sink.get('lost', 0):,}, "
                f"duplicate ids {sink.get('dup_ids', 0):,}, duplicate seq {sink.get('dup_seq', 0):,}, "
                f"latency p50 {lat.get('p50')} ms p99 {lat.get('p99')} ms"
                + (" (stalled)" if sink.get("stalled") else "")
            )
        gen, brk = r.get("generator_core_use"), r.get("broker_core_use")
        if gen is not None and gen > 0.7:
            broker = f"{brk:.0%}" if brk is not None else "?"
            out.append(
                f"{r['broker']} run {r['run']}: the generator used {gen:.0%} of a core per process and the broker "
                f"{broker}: with fewer free cores than that they compete for CPU"
            )
        if r.get("stalled") and not r.get("aborted"):
            out.append(
                f"{r['broker']} run {r['run']}: stalled (no progress for --stall seconds) after "
                f"{r.get('published', 0):,} published; what did not arrive counts as lost, and its rates cover "
                "only the time before the stall"
            )
        for e in r.get("errors", [])[:5]:
            out.append(f"{r['broker']} run {r['run']}: {e}")
    return out


def machine() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mqhook": __version__,
    }
    try:
        import uvloop

        info["uvloop"] = uvloop.__version__
    except ImportError:  # pragma: no cover
        info["uvloop"] = None
    try:
        info["loadavg"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        info["loadavg"] = None
    return info


def write_json(result: dict[str, Any], path: str, argv: list[str] | None = None) -> None:
    doc = {"version": 1, "command": ["mqhook", "bench", *(argv or [])], "machine": machine(), **result}
    Path(path).write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def require_matplotlib() -> None:
    """Fail early, before a long run, if ``--plot`` cannot work."""
    if "matplotlib" in sys.modules and sys.modules["matplotlib"] is None:
        raise SystemExit(PLOT_HINT)
    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit(PLOT_HINT)


def _median_run(result: dict[str, Any], name: str, key: str) -> dict[str, Any] | None:
    runs = sorted(
        (r for r in result["runs"] if r["broker"] == name and not r.get("aborted")), key=lambda r: r.get(key) or 0
    )
    return runs[len(runs) // 2] if runs else None


def plot(result: dict[str, Any], path: str) -> None:
    """Throughput over time (1 s buckets, in and out) and the latency distribution (CDF), one
    line per broker (its median run by msg/s out, or connects/s)."""
    try:
        mpl: Any = importlib.import_module("matplotlib")
        mpl.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError as exc:
        raise SystemExit(PLOT_HINT) from exc
    pubsub = result["scenario"]["mode"] == "pubsub"
    fig, axes = plt.subplots(1, 2 if pubsub else 1, figsize=(13 if pubsub else 7, 4.5), squeeze=False)
    ax_lat = axes[0][-1]
    for i, target in enumerate(result["targets"]):
        run = _median_run(result, target["name"], "msgs_out_per_s" if pubsub else "connects_per_s")
        if run is None:
            continue
        color = f"C{i}"
        label = f"{target['name']} (run {run['run']})"
        if pubsub:
            ax = axes[0][0]
            for key, style, what in (("timeline_in", "--", "in"), ("timeline_out", "-", "out")):
                ys = run[key]
                if ys:  # steps: one bucket per second, closed at its end
                    ax.plot(
                        range(len(ys) + 1),
                        [*ys, ys[-1]],
                        color=color,
                        linestyle=style,
                        drawstyle="steps-post",
                        label=f"{label} {what}",
                    )
        buckets = run["latency_buckets_us"]
        total = sum(c for _, _, c in buckets)
        if total:
            xs, ys, acc = [], [], 0
            for _lo, hi, c in buckets:
                acc += c
                xs.append(hi / 1000)
                ys.append(100 * acc / total)
            ax_lat.plot(xs, ys, color=color, drawstyle="steps-post", label=label)
    if pubsub:
        ax = axes[0][0]
        ax.set_title("throughput (1 s buckets)")
        ax.set_xlabel("seconds since the first publish (the last bucket may be partial)")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("messages / s")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    ax_lat.set_title("latency: " + ("publish -> subscriber" if pubsub else "CONNECT -> CONNACK"))
    ax_lat.set_xscale("log")
    ax_lat.set_xlabel("milliseconds")
    ax_lat.set_ylabel("% of messages at or below" if pubsub else "% of connects at or below")
    ax_lat.legend(fontsize="small")
    ax_lat.grid(alpha=0.3, which="both")
    fig.suptitle(f"mqhook bench: {result['description']}", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
