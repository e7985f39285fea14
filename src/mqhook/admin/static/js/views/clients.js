// Clients: GET /api/v1/clients?page&limit&clientid_prefix, refreshed every 2 s; kick with a
// confirmation (DELETE /api/v1/clients/{clientid}).

import * as api from "../api.js";
import { badge, confirmDialog, emptyRow, flash, fmtInt, fmtTime, h, pageHeader, replace, syncRows, table } from "../dom.js";

const LIMIT = 50;
const COLS = [
  { label: "Client ID", class: "fill client-col" },
  { label: "Username" },
  { label: "State" },
  { label: "Peer" },
  { label: "Protocol" },
  { label: "Keepalive", num: true },
  { label: "Subs", num: true, title: "subscriptions" },
  { label: "Inflight", num: true },
  { label: "Queued", num: true, title: "messages queued for the client" },
  { label: "Connected" },
  { label: "", class: "actions-col" },
];

// Kept across visits to the page.
const state = { page: 1, prefix: "" };

function protoName(c) {
  const v = { 3: "3.1", 4: "3.1.1", 5: "5.0" }[c.proto_ver] || String(c.proto_ver ?? "");
  return `${c.proto_name || "MQTT"} ${v}`.trim();
}

export async function clientsView(ctx) {
  const prefixInput = h("input", {
    id: "clients-prefix",
    type: "search",
    placeholder: "Client ID starts with…",
    value: state.prefix,
    spellcheck: "false",
    dataset: { testid: "clients-prefix" },
    "aria-label": "Client ID prefix",
  });
  const prev = h("button", { type: "button", class: "btn small", id: "clients-prev", dataset: { testid: "clients-prev" } }, "‹ Previous");
  const next = h("button", { type: "button", class: "btn small", id: "clients-next", dataset: { testid: "clients-next" } }, "Next ›");
  const pageInfo = h("span", { class: "muted small", id: "clients-page", dataset: { testid: "clients-page" } });
  const { table: tbl, tbody } = table(COLS, { id: "clients-table", dataset: { testid: "clients-table" } });

  ctx.root.append(
    pageHeader("Clients", [h("form", { class: "filter", onsubmit: (ev) => ev.preventDefault() }, prefixInput), prev, next], pageInfo),
    h("div", { class: "card flush" }, tbl),
  );

  let debounce = null;
  prefixInput.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      state.prefix = prefixInput.value.trim();
      state.page = 1;
      refresh().catch((err) => ctx.onError(err));
    }, 250);
  });
  prev.addEventListener("click", () => {
    if (state.page > 1) {
      state.page -= 1;
      refresh().catch((err) => ctx.onError(err));
    }
  });
  next.addEventListener("click", () => {
    state.page += 1;
    refresh().catch((err) => ctx.onError(err));
  });

  let seq = 0;
  async function refresh() {
    const my = ++seq;
    const q = new URLSearchParams({ page: String(state.page), limit: String(LIMIT) });
    if (state.prefix) q.set("clientid_prefix", state.prefix);
    const body = await api.get("/clients?" + q.toString(), { signal: ctx.signal });
    if (!ctx.alive() || my !== seq) return;
    const items = (body && body.data) || [];
    const meta = (body && body.meta) || {};
    const count = typeof meta.count === "number" ? meta.count : null;
    if (!items.length && state.page > 1 && count !== null && count > 0) {
      // the page emptied (clients left): go back to the last one that has rows
      state.page = Math.max(1, Math.ceil(count / LIMIT));
      return refresh();
    }
    const pages = count !== null ? Math.max(1, Math.ceil(count / LIMIT)) : null;
    replace(pageInfo, count !== null ? `${fmtInt(count)} client${count === 1 ? "" : "s"} · page ${state.page} of ${pages}` : `page ${state.page}`);
    prev.disabled = state.page <= 1;
    next.disabled = pages !== null ? state.page >= pages : items.length < LIMIT;
    if (!items.length) {
      replace(tbody, emptyRow(COLS.length, state.prefix ? `No client id starts with "${state.prefix}".` : "No client connected.", "clients-empty"));
      return;
    }
    syncRows(tbody, items, (c) => c.clientid, (c) => JSON.stringify(c), (c) => buildRow(c, refresh));
  }

  function buildRow(c, again) {
    return h(
      "tr",
      { dataset: { testid: "client-row", clientid: c.clientid } },
      h("td", { class: "mono fill client-col", title: c.clientid, dataset: { col: "clientid" } }, c.clientid),
      h("td", null, c.username ?? h("span", { class: "muted" }, "–")),
      h("td", null, c.connected ? badge("connected", "ok") : badge("offline", "off")),
      h("td", { class: "mono" }, c.peername || "–"),
      h("td", null, protoName(c)),
      h("td", { class: "num" }, fmtInt(c.keepalive)),
      h("td", { class: "num" }, fmtInt(c.subscriptions_cnt)),
      h("td", { class: "num" }, fmtInt(c.inflight_cnt)),
      h("td", { class: "num" }, fmtInt(c.mqueue_len)),
      h("td", null, fmtTime(c.connected_at, { ms: true })),
      h(
        "td",
        { class: "actions-col" },
        h(
          "button",
          {
            type: "button",
            class: "btn small danger-ghost",
            dataset: { testid: "kick" },
            onclick: async () => {
              const ok = await confirmDialog(
                "Kick client",
                `Disconnect "${c.clientid}" and end its session? An MQTT 5 client gets DISCONNECT 0x98.`,
                "Kick",
              );
              if (!ok) return;
              try {
                await api.del("/clients/" + api.seg(c.clientid));
                flash(`Client "${c.clientid}" kicked.`);
              } catch (err) {
                flash(err.message, "error");
              }
              again().catch(() => {});
            },
          },
          "Kick",
        ),
      ),
    );
  }

  await ctx.poll(refresh);
}
