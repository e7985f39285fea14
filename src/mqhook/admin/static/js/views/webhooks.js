// Webhooks list: GET /api/v1/webhooks every 2 s; enable/disable, edit, delete.

import * as api from "../api.js";
import {
  badge,
  confirmDialog,
  emptyRow,
  flash,
  fmtInt,
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

const COLS = [
  { label: "Name / note" },
  { label: "Enabled", title: "enable / disable; running, disabled or failing" },
  { label: "Matched", num: true, title: "events offered to the webhook" },
  { label: "Success", num: true, title: "events answered 2xx" },
  { label: "Failed", num: true, title: "events answered with a status not retried" },
  { label: "Dropped", num: true, title: "events given up: queue full, retries exhausted, refused, stopped" },
  { label: "Rate /s", num: true, title: "events matched per second over the last 10 s" },
  { label: "Last error", class: "fill" },
  { label: "", class: "actions-col" },
];

export async function deleteWebhook(name) {
  const ok = await confirmDialog(
    "Delete webhook",
    `Delete the webhook "${name}"? Events already queued are delivered for up to 5 s, then dropped.`,
    "Delete",
  );
  if (!ok) return false;
  try {
    await api.del("/webhooks/" + api.seg(name));
    return true;
  } catch (err) {
    flash(err.message, "error");
    return false;
  }
}

export async function setEnabled(name, enable) {
  try {
    return await api.post(`/webhooks/${api.seg(name)}/${enable ? "enable" : "disable"}`);
  } catch (err) {
    flash(err.message, "error");
    return null;
  }
}

function metricCell(col) {
  return h("td", { class: "num", dataset: { col } }, "–");
}

// What rebuilds a row; the counters are updated in place by updateRow.
function rowSig(item) {
  return JSON.stringify([item.config.description, item.config.enable, item.status, item.read_only]);
}

function setCell(tr, col, text, tone, title) {
  const td = tr.querySelector(`[data-col="${col}"]`);
  if (td.textContent !== text) td.textContent = text;
  td.classList.toggle("bad-text", tone === "bad");
  td.classList.toggle("warn-text", tone === "warn");
  if (title) td.title = title;
  else td.removeAttribute("title");
}

// "POST http://host/path: HTTP 503 ..." -> "HTTP 503 ...": the request is the webhook's own
// (the whole text is the cell's title and on the webhook's page).
function shortError(text) {
  return String(text).replace(/^[A-Z]+ \S+: /, "");
}

function updateRow(tr, item) {
  const m = item.metrics || {};
  const dropped = sumValues(m.dropped);
  const droppedTitle = Object.entries(m.dropped || {})
    .filter(([, n]) => n)
    .map(([reason, n]) => `${reason}: ${n}`)
    .join(", ");
  setCell(tr, "matched", fmtInt(m.matched));
  setCell(tr, "success", fmtInt(m.success));
  setCell(tr, "failed", fmtInt(m.failed), m.failed ? "bad" : null);
  setCell(tr, "dropped", fmtInt(dropped), dropped ? "warn" : null, droppedTitle);
  setCell(tr, "rate", fmtRate(m.rate));
  const td = tr.querySelector('[data-col="last_error"]');
  const key = JSON.stringify([m.last_error, m.last_error_at]);
  if (td.dataset.sig !== key) {
    td.dataset.sig = key;
    replace(
      td,
      m.last_error
        ? h("span", { class: "error-text clamp", title: `${fmtTime(m.last_error_at)}: ${m.last_error}` }, shortError(m.last_error))
        : h("span", { class: "muted" }, "–"),
    );
  }
}

export async function webhooksView(ctx) {
  const { table: tbl, tbody } = table(COLS, { id: "webhooks-table", dataset: { testid: "webhooks-table" } });
  const count = h("span", { id: "webhooks-count", dataset: { testid: "webhooks-count" } });
  ctx.root.append(
    pageHeader(
      "Webhooks",
      [h("a", { href: "#/webhooks/new", class: "btn primary", id: "create-webhook", dataset: { testid: "create-webhook" } }, "+ Create")],
      count,
    ),
    h("div", { class: "card flush" }, tbl),
  );

  const refresh = async () => {
    const body = await api.get("/webhooks", { signal: ctx.signal });
    if (!ctx.alive()) return;
    const items = (body && body.data) || [];
    replace(count, items.length === 1 ? "1 webhook" : `${items.length} webhooks`);
    if (!items.length) {
      replace(tbody, emptyRow(COLS.length, "No webhook yet. Create one to send messages and events to your HTTP server.", "webhooks-empty"));
      return;
    }
    syncRows(tbody, items, (it) => it.config.name, rowSig, (it) => buildRow(it, refresh), updateRow);
  };
  await ctx.poll(refresh);
}

function buildRow(item, refresh) {
  const cfg = item.config;
  const name = cfg.name;
  const href = "#/webhooks/" + encodeURIComponent(name);
  const ro = !!item.read_only;

  const toggle = h("input", {
    type: "checkbox",
    class: "switch",
    checked: !!cfg.enable,
    disabled: ro,
    title: ro ? "Defined in the config file: read-only" : null,
    "aria-label": (cfg.enable ? "Disable " : "Enable ") + name,
    dataset: { testid: "toggle" },
    onchange: async (ev) => {
      ev.target.disabled = true;
      const res = await setEnabled(name, ev.target.checked);
      if (!res) ev.target.checked = !ev.target.checked;
      ev.target.disabled = false;
      refresh().catch(() => {});
    },
  });

  return h(
    "tr",
    { dataset: { testid: "webhook-row", name } },
    h(
      "td",
      { class: "name-col" },
      h("div", null, h("a", { href, dataset: { testid: "webhook-link" } }, name), ro ? [" ", badge("config file", "info")] : null),
      cfg.description ? h("div", { class: "note", title: cfg.description, dataset: { testid: "webhook-note" } }, cfg.description) : null,
    ),
    h("td", { class: "status-col" }, toggle, " ", statusBadge(item.status)),
    metricCell("matched"),
    metricCell("success"),
    metricCell("failed"),
    metricCell("dropped"),
    metricCell("rate"),
    h("td", { class: "fill error-col", dataset: { col: "last_error" } }),
    h(
      "td",
      { class: "actions-col" },
      ro
        ? h("button", { type: "button", class: "btn small", disabled: true, title: "Defined in the config file: read-only", dataset: { testid: "edit" } }, "Edit")
        : h("a", { class: "btn small", href: href + "/edit", dataset: { testid: "edit" } }, "Edit"),
      h(
        "button",
        {
          type: "button",
          class: "btn small danger-ghost",
          disabled: ro,
          title: ro ? "Defined in the config file: read-only" : null,
          dataset: { testid: "delete" },
          onclick: async () => {
            if (await deleteWebhook(name)) {
              flash(`Webhook "${name}" deleted.`);
              refresh().catch(() => {});
            }
          },
        },
        "Delete",
      ),
    ),
  );
}
