// DOM helpers. Everything from the server goes in as text nodes or attribute values: no
// innerHTML anywhere, so a webhook named "<img onerror=...>" is just text.

// h("tr", {class: "x", dataset: {testid: "row"}, onclick: fn}, "text", child, [more, children])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "dataset") {
        for (const [k, v] of Object.entries(value)) if (v !== undefined && v !== null) el.dataset[k] = String(v);
      } else if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value);
      } else if (key === "class") {
        el.className = value;
      } else if (key === "value" || key === "checked" || key === "disabled" || key === "selected" || key === "open") {
        el[key] = value;
      } else if (value === true) {
        el.setAttribute(key, "");
      } else {
        el.setAttribute(key, String(value));
      }
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// -- formatting -------------------------------------------------------------------------------

const intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const rateFmt = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

export function fmtInt(n) {
  return typeof n === "number" && Number.isFinite(n) ? intFmt.format(n) : "–";
}

export function fmtRate(n) {
  return typeof n === "number" && Number.isFinite(n) ? rateFmt.format(n) : "–";
}

export function fmtMs(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "–";
  return n < 10 ? n.toFixed(1) + " ms" : intFmt.format(Math.round(n)) + " ms";
}

export function fmtBytes(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "–";
  if (n < 1024) return n + " B";
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return v.toFixed(v < 10 ? 1 : 0) + " " + units[i];
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

// Unix seconds (or ms with `ms`) -> "14:03:22" today, "2026-12-06 14:03:22" otherwise.
export function fmtTime(t, { ms = false, millis = false } = {}) {
  if (typeof t !== "number" || !Number.isFinite(t) || t <= 0) return "–";
  const d = new Date(ms ? t : t * 1000);
  const now = new Date();
  let s = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (millis) s += "." + pad(d.getMilliseconds(), 3);
  if (d.toDateString() !== now.toDateString()) {
    s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` + s;
  }
  return s;
}

export function fmtDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  let s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const mm = Math.floor(s / 60);
  s -= mm * 60;
  if (d) return `${d}d ${hh}h ${mm}m`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${s}s`;
  return `${s}s`;
}

export function sumValues(obj) {
  if (!obj || typeof obj !== "object") return 0;
  let n = 0;
  for (const v of Object.values(obj)) if (typeof v === "number") n += v;
  return n;
}

export function truncate(s, n) {
  s = String(s);
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

// -- widgets ---------------------------------------------------------------------------------

export function badge(text, tone) {
  return h("span", { class: "badge" + (tone ? " " + tone : "") }, text);
}

const STATUS_TONE = { running: "ok", disabled: "off", failing: "bad" };

export function statusBadge(status) {
  return h("span", { class: "badge " + (STATUS_TONE[status] || "off"), dataset: { testid: "status" } }, status || "unknown");
}

let flashTimer = null;

// A short message at the top of the page (kind: "ok" | "error").
export function flash(message, kind = "ok") {
  const el = document.getElementById("flash");
  replace(el, message);
  el.className = "flash " + kind;
  el.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => {
    el.hidden = true;
  }, kind === "error" ? 8000 : 4000);
}

export function hideFlash() {
  const el = document.getElementById("flash");
  clearTimeout(flashTimer);
  el.hidden = true;
}

let pendingFlash = null;

// A message for the page the app is about to navigate to (a route change hides the current one).
export function flashNext(message, kind = "ok") {
  pendingFlash = [message, kind];
}

export function showPendingFlash() {
  if (pendingFlash) flash(...pendingFlash);
  else hideFlash();
  pendingFlash = null;
}

// A modal confirmation; resolves true when confirmed.
export function confirmDialog(title, text, okLabel = "Confirm") {
  const dialog = document.getElementById("confirm-dialog");
  replace(document.getElementById("confirm-title"), title);
  replace(document.getElementById("confirm-text"), text);
  replace(document.getElementById("confirm-ok"), okLabel);
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    dialog.querySelector("[data-testid=confirm-cancel]").focus();
  });
}

// Keyed rows: a row is rebuilt only when its content changed, so a live table does not steal
// the focus or a click from a row that stayed the same. `build(item)` returns a <tr>;
// `sig(item)` a string that changes whenever the row should; `update(tr, item)`, if given, then
// refreshes the live cells of every row in place.
export function syncRows(tbody, items, key, sig, build, update) {
  const old = new Map();
  for (const tr of Array.from(tbody.children)) if (tr.dataset.key !== undefined) old.set(tr.dataset.key, tr);
  let prev = null;
  for (const item of items) {
    const k = key(item);
    const s = sig(item);
    let tr = old.get(k);
    if (tr && tr.dataset.sig === s) {
      old.delete(k);
    } else {
      const fresh = build(item);
      fresh.dataset.key = k;
      fresh.dataset.sig = s;
      if (tr) {
        old.delete(k);
        tr.replaceWith(fresh);
      }
      tr = fresh;
    }
    if (update) update(tr, item);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
  for (const tr of Array.from(tbody.children)) if (tr.dataset.key === undefined) tr.remove();
}

// A table with a header; `cols` = [{label, num}]; returns {table, tbody}.
export function table(cols, attrs = {}) {
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "grid", ...attrs },
    h("thead", null, h("tr", null, cols.map((c) => h("th", { class: c.num ? "num" : c.class || null, title: c.title || null }, c.label)))),
    tbody,
  );
  return { table, tbody };
}

export function emptyRow(colspan, text, testid) {
  return h("tr", { class: "empty" }, h("td", { colspan, dataset: { testid } }, text));
}

// The page header: title, optional subtitle and actions on the right.
export function pageHeader(title, actions = [], sub = null) {
  return h(
    "header",
    { class: "page-head" },
    h("div", null, h("h1", { dataset: { testid: "page-title" } }, title), sub ? h("div", { class: "muted small" }, sub) : null),
    h("div", { class: "actions" }, actions),
  );
}
