// Overview: GET /api/v1/overview every 2 s.

import * as api from "../api.js";
import { fmtDuration, fmtInt, fmtRate, h, pageHeader, replace } from "../dom.js";

function stat(label, id, hint) {
  return h(
    "div",
    { class: "stat" },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value", id: "ov-" + id, dataset: { testid: "ov-" + id } }, "–"),
    hint ? h("div", { class: "stat-hint muted" }, hint) : null,
  );
}

export async function overviewView(ctx) {
  const sub = h("span", { id: "ov-node", dataset: { testid: "ov-node" } });
  ctx.root.append(
    pageHeader("Overview", [], sub),
    h("h2", { class: "section-title" }, "Broker"),
    h(
      "div",
      { class: "stats" },
      stat("Connections", "connections"),
      stat("Sessions", "sessions"),
      stat("Subscriptions", "subscriptions"),
      stat("Retained", "retained"),
      stat("Messages in", "messages_in_rate", "per second"),
      stat("Messages out", "messages_out_rate", "per second"),
    ),
    h("h2", { class: "section-title" }, "Webhooks ", h("a", { href: "#/webhooks", class: "small" }, "manage")),
    h(
      "div",
      { class: "stats" },
      stat("Webhooks", "wh-total"),
      stat("Enabled", "wh-enabled"),
      stat("Failing", "wh-failing"),
      stat("Events matched", "wh-matched"),
      stat("Delivered", "wh-success"),
      stat("Failed", "wh-failed"),
      stat("Dropped", "wh-dropped"),
    ),
  );
  const set = (id, text) => replace(document.getElementById("ov-" + id), text);
  await ctx.poll(async () => {
    const o = await api.get("/overview", { signal: ctx.signal });
    if (!ctx.alive()) return;
    for (const k of ["connections", "sessions", "subscriptions", "retained"]) set(k, fmtInt(o[k]));
    set("messages_in_rate", fmtRate(o.messages_in_rate));
    set("messages_out_rate", fmtRate(o.messages_out_rate));
    const w = o.webhooks || {};
    for (const k of ["total", "enabled", "failing", "matched", "success", "failed", "dropped"]) set("wh-" + k, fmtInt(w[k]));
    document.getElementById("ov-wh-failing").classList.toggle("bad", (w.failing || 0) > 0);
    document.getElementById("ov-wh-dropped").classList.toggle("warn", (w.dropped || 0) > 0);
    document.getElementById("ov-wh-failed").classList.toggle("bad", (w.failed || 0) > 0);
    replace(sub, `${o.node || ""} · mqhook ${o.version || ""} · up ${fmtDuration(o.uptime_s)}`);
  });
}
