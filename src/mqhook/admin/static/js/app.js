// The dashboard's entry: login screen, hash router, and the life cycle of a view (its polling
// stops and its late answers are ignored once another route is shown).

import * as api from "./api.js";
import { clear, flash, h, hideFlash, replace, showPendingFlash } from "./dom.js";
import { overviewView } from "./views/overview.js";
import { webhooksView } from "./views/webhooks.js";
import { webhookFormView } from "./views/webhook_form.js";
import { webhookDetailView } from "./views/webhook_detail.js";
import { clientsView } from "./views/clients.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;

// One per shown route. `poll(fn)` runs fn now and every 2 s (never two at once) until the
// route changes; `signal` aborts its requests; `alive()` says whether it is still shown.
class ViewContext {
  constructor(root, params) {
    this.root = root;
    this.params = params;
    this.controller = new AbortController();
    this.signal = this.controller.signal;
    this.timers = [];
    this.disposed = false;
  }

  alive() {
    return !this.disposed;
  }

  poll(fn, interval = REFRESH_MS) {
    let running = false;
    const tick = async () => {
      if (this.disposed || running) return;
      running = true;
      try {
        await fn();
      } catch (err) {
        if (!this.disposed && !(err && err.name === "AbortError")) this.onError(err);
      } finally {
        running = false;
      }
    };
    this.timers.push(setInterval(tick, interval));
    return tick();
  }

  onError(err) {
    if (err && err.status === 401) return;
    flash(err && err.message ? err.message : String(err), "error");
  }

  dispose() {
    this.disposed = true;
    this.timers.forEach(clearInterval);
    this.controller.abort();
  }
}

const ROUTES = [
  [/^\/overview$/, "overview", overviewView],
  [/^\/webhooks$/, "webhooks", webhooksView],
  [/^\/webhooks\/new$/, "webhooks", (ctx) => webhookFormView(ctx, null)],
  [/^\/webhooks\/([^/]+)\/edit$/, "webhooks", (ctx, m) => webhookFormView(ctx, m[1])],
  [/^\/webhooks\/([^/]+)$/, "webhooks", (ctx, m) => webhookDetailView(ctx, m[1])],
  [/^\/clients$/, "clients", clientsView],
];

let current = null;

function currentPath() {
  const raw = location.hash.replace(/^#/, "") || "/overview";
  const [path, query] = raw.split("?");
  return { path, query: new URLSearchParams(query || "") };
}

function route() {
  if (current) current.dispose();
  current = null;
  if (!api.token()) {
    showLogin();
    return;
  }
  showApp();
  const { path, query } = currentPath();
  const view = $("view");
  clear(view);
  for (const [re, nav, render] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    const decoded = m.map((part, i) => (i === 0 ? part : safeDecode(part)));
    document.querySelectorAll(".nav-link").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
    const ctx = new ViewContext(view, query);
    current = ctx;
    Promise.resolve(render(ctx, decoded)).catch((err) => {
      if (ctx.alive() && !(err && err.name === "AbortError")) ctx.onError(err);
    });
    return;
  }
  replace(view, h("div", { class: "page-empty", dataset: { testid: "not-found" } }, "No such page. ", h("a", { href: "#/overview" }, "Go to the overview")));
}

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// -- login -----------------------------------------------------------------------------------

function showLogin(message) {
  if (current) current.dispose();
  current = null;
  $("app").hidden = true;
  $("login-screen").hidden = false;
  document.title = "Sign in · mqhook";
  const err = $("login-error");
  if (message) {
    replace(err, message);
    err.hidden = false;
  } else {
    err.hidden = true;
  }
  const pw = $("login-password");
  pw.value = "";
  ($("login-username").value ? pw : $("login-username")).focus();
}

function showApp() {
  $("login-screen").hidden = true;
  $("app").hidden = false;
  replace($("user-name"), api.userName());
  document.title = "mqhook";
}

async function submitLogin(ev) {
  ev.preventDefault();
  const button = $("login-submit");
  const err = $("login-error");
  err.hidden = true;
  button.disabled = true;
  try {
    await api.login($("login-username").value.trim(), $("login-password").value);
    $("login-password").value = "";
    hideFlash();
    route();
    loadNodeInfo();
  } catch (e) {
    replace(err, e.status === 401 ? "Wrong username or password." : e.message);
    err.hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function loadNodeInfo() {
  try {
    const o = await api.get("/overview");
    replace($("node-info"), `${o.node || ""}`, h("br"), `v${o.version || "?"}`);
  } catch {
    /* shown by the views */
  }
}

function init() {
  api.setUnauthorizedHandler(() => showLogin("Your session has ended; sign in again."));
  $("login-form").addEventListener("submit", submitLogin);
  $("logout").addEventListener("click", async () => {
    await api.logout().catch(() => {});
    showLogin();
  });
  window.addEventListener("hashchange", () => {
    showPendingFlash();
    route();
  });
  route();
  if (api.token()) loadNodeInfo();
}

init();
