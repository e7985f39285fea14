// One webhook: its settings in brief (durable or memory, dead letters), its metrics (Reset; the
// spool and dead-letter counters when it keeps either) and its deliveries log, live.

import * as api from "../api.js";
import {
  badge,
  confirmDialog,
  emptyRow,
  flash,
  flashNext,
  fmtBytes,
  fmtInt,
  fmtMs,
  fmtRate,
  fmtTime,
  h,
  pageHeader,
  replace,
  statusBadge,
  sumValues,
  syncRows,
  table,
} from "../dom.js";
import { deleteWebhook, setEnabled } from "./webhooks.js";

const OUTCOME_TONE = { "2xx": "ok", "3xx": "warn", "4xx": "bad", "5xx": "bad", other_status: "bad", timeout: "bad", connection_error: "bad" };

const DELIVERY_COLS = [
  { label: "Time" },
  { label: "Events", num: true },
  { label: "Attempt", num: true, title: "0 = first try, 1.. = retries" },
  { label: "Outcome" },
  { label: "Latency", num: true },
  { label: "Status / error", class: "fill" },
];

function metric(label, id, title) {
  return h(
    "div",
    { class: "stat small-stat", title: title || null },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value", id: "m-" + id, dataset: { testid: "m-" + id } }, "–"),
  );
}

export function notFound(name) {
  return h(
    "div",
    { class: "page-empty", dataset: { testid: "not-found" } },
    `There is no webhook named "${name}". `,
    h("a", { href: "#/webhooks" }, "Back to the webhooks"),
  );
}

export async function webhookDetailView(ctx, name) {
  const base = "/webhooks/" + api.seg(name);
  const href = "#/webhooks/" + encodeURIComponent(name);
  let item;
  try {
    item = await api.get(base, { signal: ctx.signal });
  } catch (err) {
    if (err && err.status === 404) {
      ctx.root.append(notFound(name));
      return;
    }
    throw err;
  }
  if (!ctx.alive()) return;
  const ro = !!item.read_only;

  const status = h("span", { id: "wh-status" });
  const toggle = h("input", {
    type: "checkbox",
    class: "switch",
    id: "wh-enable",
    disabled: ro,
    title: ro ? "Defined in the config file: read-only" : null,
    dataset: { testid: "wh-enable" },
    "aria-label": "Enabled",
    onchange: async (ev) => {
      ev.target.disabled = true;
      const res = await setEnabled(name, ev.target.checked);
      if (res) item = res;
      else ev.target.checked = !ev.target.checked;
      ev.target.disabled = ro;
      renderHead();
    },
  });
  const editBtn = ro
    ? h("button", { type: "button", class: "btn", disabled: true, title: "Defined in the config file: read-only", dataset: { testid: "edit" } }, "Edit")
    : h("a", { class: "btn", href: href + "/edit", id: "edit-webhook", dataset: { testid: "edit" } }, "Edit");
  const deleteBtn = h(
    "button",
    {
      type: "button",
      class: "btn danger-ghost",
      id: "delete-webhook",
      disabled: ro,
      title: ro ? "Defined in the config file: read-only" : null,
      dataset: { testid: "delete" },
      onclick: async () => {
        if (await deleteWebhook(name)) {
          flashNext(`Webhook "${name}" deleted.`);
          location.hash = "#/webhooks";
        }
      },
    },
    "Delete",
  );

  const settings = h("dl", { class: "kv", id: "wh-settings", dataset: { testid: "wh-settings" } });
  const resetBtn = h(
    "button",
    {
      type: "button",
      class: "btn small",
      id: "reset-metrics",
      dataset: { testid: "reset-metrics" },
      onclick: async () => {
        const ok = await confirmDialog("Reset metrics", `Set the counters of "${name}" shown here back to zero? Prometheus counters are not affected.`, "Reset");
        if (!ok) return;
        try {
          await api.post(base + "/metrics/reset");
          flash("Metrics reset.");
          refreshMetrics().catch(() => {});
        } catch (err) {
          flash(err.message, "error");
        }
      },
    },
    "Reset",
  );
  const resetAt = h("span", { class: "muted small", id: "m-reset_at" });
  const lastError = h("div", { class: "last-error", id: "m-last_error", dataset: { testid: "m-last_error" }, hidden: true });
  const droppedDetail = h("div", { class: "muted small", id: "m-dropped-detail" });
  // README "Reliability": the counters a durable webhook or one with dead letters adds.
  const spoolStats = h(
    "div",
    { id: "spool-stats", class: "spool-stats", dataset: { testid: "spool-stats" }, hidden: true },
    h("div", { class: "sub-title" }, "Spool and dead letters"),
    h(
      "div",
      { class: "stats compact cols3" },
      metric("Spool bytes", "spool_bytes", "events on disk not yet delivered or given up"),
      metric("Corrupt records", "spool_corrupt", "torn or damaged records skipped at start-up"),
      metric("Dead-letter refused", "dead_letter_refused", "dead letters refused: max dead-letter size reached"),
      metric("Dead-lettered", "dead_lettered", "events given up and kept as dead letters"),
      metric("Dead letters kept", "dead_letters", "in dead.log now"),
      metric("Dead-letter bytes", "dead_letter_bytes"),
    ),
  );
  const { table: dtable, tbody: dbody } = table(DELIVERY_COLS, { id: "deliveries-table", class: "grid dense", dataset: { testid: "deliveries-table" } });
  const dcount = h("span", { class: "muted small", id: "deliveries-count" });

  ctx.root.append(
    pageHeader(
      h("span", null, name, " ", status),
      [h("label", { class: "inline-switch", for: "wh-enable" }, toggle, " Enabled"), editBtn, deleteBtn],
      h("span", null, h("a", { href: "#/webhooks" }, "Webhooks"), " / ", name, ro ? [" ", badge("config file", "info")] : null),
    ),
    h(
      "div",
      { class: "detail-grid" },
      h(
        "section",
        { class: "card" },
        h("div", { class: "card-head" }, h("h2", null, "Metrics"), h("div", { class: "actions" }, resetAt, resetBtn)),
        h(
          "div",
          { class: "stats compact" },
          metric("Matched", "matched", "events offered to the webhook"),
          metric("Success", "success", "events answered 2xx"),
          metric("Failed", "failed", "events answered with a status not retried"),
          metric("Dropped", "dropped", "events given up"),
          metric("Retried", "retried", "events sent again"),
          metric("Requests", "requests", "HTTP attempts"),
          metric("Rate /s", "rate", "events matched per second, last 10 s"),
          metric("Success /s", "rate_success"),
          metric("Queued", "queuing"),
          metric("Queued bytes", "queuing_bytes"),
          metric("In flight", "inflight", "requests in flight (events in them: below)"),
          metric("Saturated", "saturated", "backpressure pausing publishers"),
        ),
        droppedDetail,
        spoolStats,
        lastError,
      ),
      h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", null, "Settings")), settings),
    ),
    h(
      "section",
      { class: "card flush", id: "deliveries" },
      h("div", { class: "card-head padded" }, h("h2", null, "Deliveries"), dcount),
      dtable,
    ),
  );

  function renderHead() {
    const durable = item.config.durable === true;
    replace(
      status,
      statusBadge(item.status),
      " ",
      h(
        "span",
        { class: "badge " + (durable ? "info" : "off"), id: "wh-durability", dataset: { testid: "wh-durability" }, title: durable ? "at least once: events spooled on disk" : "at most once: events in memory" },
        durable ? "durable" : "memory",
      ),
    );
    toggle.checked = !!item.config.enable;
    renderSettings(item.config);
  }

  function renderSettings(c) {
    const events = c.events === "all" ? "all messages and events" : (c.events || []).join(", ");
    const rows = [
      ["Note", c.description || "–"],
      ["Request", `${String(c.method || "post").toUpperCase()} ${c.url}`],
      ["Events", events],
      ["Topics", (c.topics || []).join("  ")],
      ["Headers", Object.entries(c.headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n") || "–"],
      ["Body", typeof c.body === "string" ? c.body : "the event JSON"],
      ["Batch", `${c.batch_size ?? 1} per request, linger ${c.batch_time ?? "0ms"}`],
      ["Retries", `${c.max_retries ?? 2}, backoff ${c.retry_backoff ?? "1s"} … ${c.retry_backoff_max ?? "30s"}`],
      ["Queue", `${fmtInt(c.max_queued_events)} events / ${c.max_buffer_bytes}, ${c.overflow}`],
      [
        "Delivery",
        c.durable
          ? `durable (at least once): spool up to ${c.max_spool_bytes}, fsync ${c.fsync}${c.fsync === "interval" ? ` every ${c.fsync_interval}` : ""}, retried until ${c.max_event_age} old`
          : "memory (at most once)",
      ],
      ["Dead letters", c.dead_letter ? `kept, up to ${c.max_dead_letter_bytes}` : "off"],
      ["Signed", c.secret ? "yes" : "no"],
      ["Source", item.read_only ? "config file (read-only)" : "API"],
      ["Changed", item.created_at ? `created ${fmtTime(item.created_at)}` + (item.updated_at && item.updated_at !== item.created_at ? `, updated ${fmtTime(item.updated_at)}` : "") : "–"],
    ];
    replace(settings, rows.map(([k, v]) => [h("dt", null, k), h("dd", { dataset: { testid: "setting-" + k.toLowerCase().replace(/\s+/g, "-") } }, String(v))]));
  }

  const setM = (id, text, tone) => {
    const el = document.getElementById("m-" + id);
    if (!el) return;
    replace(el, text);
    el.classList.toggle("bad", tone === "bad");
    el.classList.toggle("warn", tone === "warn");
  };

  function renderMetrics(m) {
    const dropped = sumValues(m.dropped);
    setM("matched", fmtInt(m.matched));
    setM("success", fmtInt(m.success));
    setM("failed", fmtInt(m.failed), m.failed ? "bad" : null);
    setM("dropped", fmtInt(dropped), dropped ? "warn" : null);
    setM("retried", fmtInt(m.retried));
    setM("requests", fmtInt(m.requests));
    setM("rate", fmtRate(m.rate));
    setM("rate_success", fmtRate(m.rate_success));
    setM("queuing", fmtInt(m.queuing));
    setM("queuing_bytes", fmtBytes(m.queuing_bytes));
    setM("inflight", `${fmtInt(m.inflight)} (${fmtInt(m.inflight_events)} ev)`);
    setM("saturated", m.saturated ? "yes" : "no", m.saturated ? "warn" : null);
    spoolStats.hidden = !(m.durable || item.config.durable || item.config.dead_letter);
    setM("spool_bytes", fmtBytes(m.spool_bytes));
    setM("spool_corrupt", fmtInt(m.spool_corrupt), m.spool_corrupt ? "warn" : null);
    setM("dead_letter_refused", fmtInt(m.dead_letter_refused), m.dead_letter_refused ? "bad" : null);
    setM("dead_lettered", fmtInt(m.dead_lettered), m.dead_lettered ? "warn" : null);
    setM("dead_letters", fmtInt(m.dead_letters));
    setM("dead_letter_bytes", fmtBytes(m.dead_letter_bytes));
    const reasons = Object.entries(m.dropped || {}).filter(([, n]) => n);
    replace(droppedDetail, reasons.length ? "Dropped: " + reasons.map(([r, n]) => `${r} ${fmtInt(n)}`).join(", ") : "");
    replace(resetAt, m.reset_at ? `since ${fmtTime(m.reset_at)}` : "");
    if (m.last_error) {
      replace(lastError, h("strong", null, "Last error"), m.last_error_at ? ` at ${fmtTime(m.last_error_at)}: ` : ": ", m.last_error);
      lastError.hidden = false;
    } else {
      lastError.hidden = true;
    }
  }

  function renderDeliveries(list) {
    replace(dcount, list.length ? `newest first, last ${list.length}` : "");
    if (!list.length) {
      replace(dbody, emptyRow(DELIVERY_COLS.length, "No request sent yet.", "deliveries-empty"));
      return;
    }
    // Deliveries have no id: keyed by their content (a repeat gets a suffix).
    const seen = new Map();
    const keyed = list.map((d) => {
      const base = `${d.at}|${d.attempt}|${d.outcome}|${d.latency_ms}`;
      const n = (seen.get(base) || 0) + 1;
      seen.set(base, n);
      return { d, k: base + "|" + n };
    });
    syncRows(dbody, keyed, (x) => x.k, (x) => JSON.stringify(x.d), ({ d }) => {
      const tone = OUTCOME_TONE[d.outcome] || "off";
      return h(
        "tr",
        { dataset: { testid: "delivery-row" } },
        h("td", { class: "mono" }, fmtTime(d.at, { millis: true })),
        h("td", { class: "num", dataset: { col: "events" } }, fmtInt(d.events)),
        h("td", { class: "num", dataset: { col: "attempt" } }, d.attempt ? `retry ${d.attempt}` : "first"),
        h("td", { dataset: { col: "outcome" } }, h("span", { class: "badge " + tone }, d.outcome)),
        h("td", { class: "num", dataset: { col: "latency" } }, fmtMs(d.latency_ms)),
        h(
          "td",
          { class: "fill", dataset: { col: "status" }, title: d.error || null },
          d.status !== null && d.status !== undefined ? `HTTP ${d.status}` : "",
          d.error ? h("span", { class: d.status ? "muted" : "error-text" }, (d.status ? " · " : "") + d.error) : null,
        ),
      );
    });
  }

  async function refreshMetrics() {
    const m = await api.get(base + "/metrics", { signal: ctx.signal });
    if (ctx.alive()) renderMetrics(m);
  }

  renderHead();
  renderMetrics(item.metrics || {});
  await ctx.poll(async () => {
    const [it, m, d] = await Promise.all([
      api.get(base, { signal: ctx.signal }),
      api.get(base + "/metrics", { signal: ctx.signal }),
      api.get(base + "/deliveries", { signal: ctx.signal }),
    ]);
    if (!ctx.alive()) return;
    item = it;
    renderHead();
    renderMetrics(m);
    renderDeliveries((d && d.data) || []);
  });
}
