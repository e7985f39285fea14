// Create / Edit a webhook, in the steps of EMQX's Dashboard (Integration -> Webhook -> Create):
// 1 name and note, 2 trigger, 3 method + URL (with Test), headers and body, then mqhook's own
// 4 delivery guarantees (durable spool, dead letters: README "Reliability"), 5 advanced settings.
// Save: POST /api/v1/webhooks or PUT /api/v1/webhooks/{name}. A 400's `field` is shown next to
// the input it names, plus a summary line.

import * as api from "../api.js";
import { clear, flashNext, fmtMs, h, pageHeader, replace, truncate } from "../dom.js";
import { notFound } from "./webhook_detail.js";

// Labels for the event catalogue (GET /api/v1/events gives the names and kinds).
const EVENT_LABELS = {
  "message.publish": "Message published",
  "message.delivered": "Message delivered",
  "message.acked": "Message acknowledged",
  "message.dropped": "Message dropped (not forwarded)",
  "delivery.dropped": "Delivery dropped",
  "client.connected": "Client connected",
  "client.connack": "Connection acknowledged",
  "client.disconnected": "Client disconnected",
  "client.check_authn_complete": "Authentication complete",
  "client.check_authz_complete": "Authorization complete",
  "session.subscribed": "Session subscribed",
  "session.unsubscribed": "Session unsubscribed",
};

// Used only if GET /api/v1/events fails.
const FALLBACK_EVENTS = [
  ["message.publish", "message"],
  ["message.delivered", "message"],
  ["message.acked", "message"],
  ["message.dropped", "message"],
  ["delivery.dropped", "message"],
  ["client.connected", "client"],
  ["client.connack", "client"],
  ["client.disconnected", "client"],
  ["client.check_authn_complete", "client"],
  ["client.check_authz_complete", "client"],
  ["session.subscribed", "client"],
  ["session.unsubscribed", "client"],
].map(([name, kind]) => ({ name, kind }));

// Step 4: [field, label, kind, default (placeholder), hint]. kind: int | duration | size | select:a,b | text | secret | list
const ADVANCED = [
  ["Connection", [
    ["pool_size", "Connection pool size", "int", "8", "keep-alive connections to the server"],
    ["connect_timeout", "Connect timeout", "duration", "15s", ""],
    ["request_timeout", "Request timeout", "duration", "15s", ""],
    ["inflight_window", "Inflight window", "int", "100", "requests in flight at once"],
  ]],
  ["Retries", [
    ["max_retries", "Max retries", "int", "2", "after the first attempt"],
    ["retry_backoff", "Retry backoff", "duration", "1s", "first wait, doubled each time"],
    ["retry_backoff_max", "Retry backoff max", "duration", "30s", ""],
    ["retry_on", "Retry on", "list", "429, 5xx", "statuses or classes; connection errors and timeouts always"],
  ]],
  ["Batching", [
    ["batch_size", "Batch size", "int", "1", "1 = one JSON object per request; more = JSON arrays"],
    ["batch_time", "Batch time", "duration", "0ms", "linger for a fuller batch"],
  ]],
  ["Queue", [
    ["max_queued_events", "Max queued events", "int", "100000", ""],
    ["max_buffer_bytes", "Max buffer size", "size", "256MB", ""],
    ["overflow", "When the queue is full", "select:drop_oldest,drop_new,backpressure", "drop_oldest", "backpressure pauses the publishers feeding it"],
    ["ordering", "Ordering", "select:none,per_client", "none", "per_client: a client's events never overtake each other"],
  ]],
  ["Payload and signing", [
    ["payload_encoding", "Payload encoding", "select:plain,base64", "plain", "base64 keeps binary payloads intact"],
    ["secret", "Signing secret", "secret", "", "HMAC-SHA256, Standard Webhooks headers; whsec_… or any string"],
  ]],
];

// Step 4, README "Reliability": what each fsync mode promises once an event is acknowledged.
const FSYNC_HINTS = {
  interval: "Group commit every fsync interval, in a worker thread. A crash of mqhook (SIGKILL, OOM) loses nothing acknowledged; a power loss or kernel crash up to one interval of acknowledged events.",
  always: "PUBACKs/PUBRECs leave only after their events are synced: neither a crash of mqhook nor a power loss loses anything acknowledged. The slowest.",
  never: "The kernel writes the spool back when it likes. A crash of mqhook loses nothing acknowledged; a power loss what the kernel had not written (typically up to 30 s).",
};
// Shown while Durable is on (same tuple as ADVANCED).
const DURABLE = [
  ["fsync", "Sync to disk", "select:interval,always,never", "interval", ""],
  ["fsync_interval", "Fsync interval", "duration", "10ms", "the group commit's period (fsync \"interval\")"],
  ["max_event_age", "Max event age", "duration", "24h", "retriable failures are retried until an event is this old, then given up (expired); Max retries is for memory webhooks"],
  ["max_spool_bytes", "Max spool size", "size", "256MB", "events in the spool, queued or in flight (also its memory bound); beyond, the queue's overflow policy applies"],
];
// Shown while Dead letters is on.
const DEAD_LETTER = [["max_dead_letter_bytes", "Max dead-letter size", "size", "64MB", "beyond, new dead letters are refused (counted dead_letter_refused)"]];
const ADVANCED_FIELDS = new Map([...ADVANCED.flatMap(([, fields]) => fields), ...DURABLE, ...DEAD_LETTER].map((f) => [f[0], f]));

const METHODS = ["post", "put", "get", "delete"];

export async function webhookFormView(ctx, editName) {
  const editing = editName !== null;
  let loaded = null; // the config being edited (kept whole: fields this form does not show survive)
  let readOnly = false;

  let catalogue, item;
  try {
    [catalogue, item] = await Promise.all([
      api.get("/events", { signal: ctx.signal }).then(
        (b) => (b && b.data) || FALLBACK_EVENTS,
        (err) => {
          if (err && (err.name === "AbortError" || err.status === 401)) throw err;
          return FALLBACK_EVENTS;
        },
      ),
      editing ? api.get("/webhooks/" + api.seg(editName), { signal: ctx.signal }) : Promise.resolve(null),
    ]);
  } catch (err) {
    if (err && err.status === 404 && ctx.alive()) {
      ctx.root.append(notFound(editName));
      return;
    }
    throw err;
  }
  if (!ctx.alive()) return;
  if (item) {
    loaded = item.config;
    readOnly = !!item.read_only;
  }

  // -- elements --------------------------------------------------------------------------
  const errSlot = (field) => h("div", { class: "field-error", id: "err-" + field, dataset: { testid: "error-" + field }, role: "alert", hidden: true });
  const hint = (text) => (text ? h("div", { class: "hint" }, text) : null);
  const row = (label, forId, control, field, hintText) =>
    h("div", { class: "form-row" }, h("label", { for: forId, class: "form-label" }, label), h("div", { class: "form-control" }, control, hint(hintText), field ? errSlot(field) : null));

  const nameInput = h("input", { id: "f-name", name: "name", dataset: { testid: "f-name" }, autocomplete: "off", spellcheck: "false", placeholder: "my-webhook", disabled: editing });
  const descInput = h("input", { id: "f-description", name: "description", dataset: { testid: "f-description" }, autocomplete: "off", placeholder: "What this webhook is for" });
  const enableInput = h("input", { id: "f-enable", type: "checkbox", class: "switch", checked: true, dataset: { testid: "f-enable" } });

  // Trigger
  const triggerAll = h("input", { type: "radio", name: "trigger", id: "trigger-all", value: "all", checked: true, dataset: { testid: "trigger-all" } });
  const triggerChosen = h("input", { type: "radio", name: "trigger", id: "trigger-chosen", value: "chosen", dataset: { testid: "trigger-chosen" } });
  const eventBoxes = new Map();
  const eventBox = (ev) => {
    const id = "ev-" + ev.name;
    const box = h("input", { type: "checkbox", id, value: ev.name, dataset: { testid: id, kind: ev.kind } });
    eventBoxes.set(ev.name, box);
    return h("label", { class: "check", for: id }, box, " ", EVENT_LABELS[ev.name] || ev.name, " ", h("code", { class: "muted" }, ev.name));
  };
  const messageEvents = catalogue.filter((e) => e.kind === "message");
  const clientEvents = catalogue.filter((e) => e.kind !== "message");
  const topicsInput = h("textarea", { id: "f-topics", rows: 3, dataset: { testid: "f-topics" }, spellcheck: "false", placeholder: "t/#\nsensors/+/temperature" });
  const chosenPanel = h(
    "div",
    { class: "trigger-panel", id: "trigger-chosen-panel", hidden: true },
    h(
      "div",
      { class: "trigger-group" },
      h("div", { class: "group-title" }, "Messages"),
      h("div", { class: "checks" }, messageEvents.map(eventBox)),
      h("label", { for: "f-topics", class: "sub-label" }, "Topic filters ", h("span", { class: "muted" }, "(one per line; wildcards + and # allowed)")),
      topicsInput,
      errSlot("topics"),
    ),
    h("div", { class: "trigger-group" }, h("div", { class: "group-title" }, "Client events"), h("div", { class: "checks" }, clientEvents.map(eventBox))),
  );
  const syncTrigger = () => {
    chosenPanel.hidden = !triggerChosen.checked;
  };
  triggerAll.addEventListener("change", syncTrigger);
  triggerChosen.addEventListener("change", () => {
    if (!topicsInput.value.trim()) topicsInput.value = "#";
    syncTrigger();
  });

  // Request
  const methodSelect = h("select", { id: "f-method", dataset: { testid: "f-method" } }, METHODS.map((m) => h("option", { value: m }, m.toUpperCase())));
  const urlInput = h("input", { id: "f-url", dataset: { testid: "f-url" }, autocomplete: "off", spellcheck: "false", placeholder: "http://127.0.0.1:5000/hook/${clientid}" });
  const testButton = h("button", { type: "button", class: "btn", id: "test-button", dataset: { testid: "test-button" } }, "Test");
  const testResult = h("div", { id: "test-result", class: "test-result", dataset: { testid: "test-result" }, "aria-live": "polite", hidden: true });

  const headerRows = h("div", { class: "header-rows", id: "header-rows", dataset: { testid: "header-rows" } });
  const addHeaderRow = (key = "", value = "") => {
    const keyInput = h("input", { class: "h-key", value: key, placeholder: "header name", "aria-label": "Header name", spellcheck: "false", dataset: { testid: "header-key" } });
    const valueInput = h("input", { class: "h-value", value, placeholder: "value (template)", "aria-label": "Header value", spellcheck: "false", dataset: { testid: "header-value" } });
    const err = h("div", { class: "field-error", role: "alert", hidden: true, dataset: { testid: "header-error" } });
    const r = h(
      "div",
      { class: "header-row", dataset: { testid: "header-row" } },
      keyInput,
      valueInput,
      h("button", { type: "button", class: "btn small ghost", title: "Remove this header", "aria-label": "Remove header", onclick: () => r.remove() }, "✕"),
      err,
    );
    headerRows.append(r);
    return r;
  };
  const bodyInput = h("textarea", { id: "f-body", rows: 5, spellcheck: "false", dataset: { testid: "f-body" }, placeholder: 'Empty: the event as JSON.  e.g. {"who": ${json:clientid}, "data": ${json:payload}}' });

  // Advanced
  const adv = new Map();
  const advControl = (field, kind, def) => {
    if (kind.startsWith("select:")) {
      const opts = kind.slice(7).split(",");
      return h("select", { id: "f-" + field, dataset: { testid: "f-" + field } }, opts.map((o) => h("option", { value: o, selected: o === def }, o)));
    }
    return h("input", {
      id: "f-" + field,
      dataset: { testid: "f-" + field },
      type: kind === "secret" ? "password" : "text",
      inputmode: kind === "int" ? "numeric" : null,
      autocomplete: kind === "secret" ? "new-password" : "off",
      spellcheck: "false",
      placeholder: def || (kind === "secret" ? "none: requests are not signed" : ""),
      class: kind === "secret" || kind === "list" ? null : "short",
    });
  };
  const advanced = h(
    "details",
    { class: "step", id: "advanced", dataset: { testid: "advanced" } },
    h("summary", { class: "step-title" }, h("span", { class: "step-no" }, "5"), "Advanced settings", h("span", { class: "muted small" }, " pool, timeouts, retries, batching, queue, signing")),
    h(
      "div",
      { class: "step-body adv-grid" },
      ADVANCED.map(([title, fields]) =>
        h(
          "fieldset",
          { class: "adv-group" },
          h("legend", null, title),
          fields.map(([field, label, kind, def, hintText]) => {
            const control = advControl(field, kind, def);
            adv.set(field, control);
            return row(label, "f-" + field, control, field, hintText);
          }),
        ),
      ),
    ),
  );

  // Delivery guarantees
  const guar = new Map(); // field -> control, like adv
  const guarRow = ([field, label, kind, def, hintText]) => {
    const control = advControl(field, kind, def);
    guar.set(field, control);
    return row(label, "f-" + field, control, field, hintText);
  };
  const durableInput = h("input", { id: "f-durable", type: "checkbox", class: "switch", dataset: { testid: "f-durable" } });
  const deadInput = h("input", { id: "f-dead_letter", type: "checkbox", class: "switch", dataset: { testid: "f-dead_letter" } });
  const durablePanel = h("div", { class: "sub-panel", id: "durable-panel", dataset: { testid: "durable-panel" }, hidden: true }, DURABLE.map(guarRow));
  const deadPanel = h("div", { class: "sub-panel", id: "dead-letter-panel", dataset: { testid: "dead-letter-panel" }, hidden: true }, DEAD_LETTER.map(guarRow));
  const fsyncHint = h("div", { class: "hint", id: "fsync-hint", dataset: { testid: "fsync-hint" }, "aria-live": "polite" });
  guar.get("fsync").after(fsyncHint);
  const syncGuarantees = () => {
    durablePanel.hidden = !durableInput.checked;
    deadPanel.hidden = !deadInput.checked;
    replace(fsyncHint, FSYNC_HINTS[guar.get("fsync").value] || "");
  };
  durableInput.addEventListener("change", syncGuarantees);
  deadInput.addEventListener("change", syncGuarantees);
  guar.get("fsync").addEventListener("change", syncGuarantees);

  const summary = h("div", { id: "form-summary", class: "form-summary", dataset: { testid: "form-summary" }, role: "alert", hidden: true });
  const saveButton = h("button", { type: "submit", class: "btn primary", id: "save-button", dataset: { testid: "save-button" }, disabled: readOnly }, editing ? "Save changes" : "Save");
  const cancelHref = editing ? "#/webhooks/" + encodeURIComponent(editName) : "#/webhooks";

  const urlRow = row("Method and URL", "f-url", h("div", { class: "url-row" }, methodSelect, urlInput, testButton), "url", "${var} templates allowed in the path. Test sends one real request with this form's settings.");
  urlRow.querySelector(".form-control").append(testResult);

  const step = (no, title, ...body) => h("section", { class: "step" }, h("h2", { class: "step-title" }, h("span", { class: "step-no" }, no), title), h("div", { class: "step-body" }, body));

  const form = h(
    "form",
    { id: "webhook-form", class: "webhook-form", dataset: { testid: "webhook-form" }, novalidate: true },
    readOnly ? h("div", { class: "notice", dataset: { testid: "read-only-notice" } }, "This webhook is defined in the config file: it is read-only here. Change it in the file.") : null,
    step(
      "1",
      "Name and note",
      row("Name", "f-name", nameInput, "name", editing ? "The name cannot be changed." : "Letters, digits, - and _, starting with a letter or digit."),
      row("Note", "f-description", descInput, "description"),
    ),
    step(
      "2",
      "Trigger",
      h(
        "div",
        { class: "radios", role: "radiogroup", "aria-label": "Trigger" },
        h("label", { class: "radio", for: "trigger-all" }, triggerAll, " All messages and events"),
        h("label", { class: "radio", for: "trigger-chosen" }, triggerChosen, " Chosen messages and events"),
      ),
      chosenPanel,
      errSlot("events"),
    ),
    step(
      "3",
      "Request",
      urlRow,
      row(
        "Headers",
        "header-rows",
        h("div", null, headerRows, h("button", { type: "button", class: "btn small ghost", id: "add-header", dataset: { testid: "add-header" }, onclick: () => addHeaderRow().querySelector("input").focus() }, "+ Add header")),
        "headers",
        "Values are templates. Secret values read back as ****** and are kept when sent back.",
      ),
      row("Body template", "f-body", bodyInput, "body", "Empty sends the event JSON. ${field} inserts raw, ${json:field} JSON-encoded, ${.} the whole event."),
    ),
    step(
      "4",
      ["Delivery guarantees", h("span", { class: "muted small" }, " durable spool, dead letters")],
      row(
        "Durable (spool to disk)",
        "f-durable",
        durableInput,
        "durable",
        "Off: events wait in memory, at most once (lost when mqhook stops or crashes). On: at least once across receiver outages, crashes and restarts: each event is written to data_dir/spool/NAME/ before its PUBACK and kept until a 2xx or a final failure.",
      ),
      durablePanel,
      row(
        "Dead letters",
        "f-dead_letter",
        deadInput,
        "dead_letter",
        "Events given up (failed, retries exhausted, expired) are kept in data_dir/spool/NAME/dead.log, to list, replay or purge (REST API, mqhook deadletters). Durable or not.",
      ),
      deadPanel,
    ),
    advanced,
    summary,
    h(
      "div",
      { class: "form-actions" },
      saveButton,
      h("a", { href: cancelHref, class: "btn", dataset: { testid: "cancel" } }, "Cancel"),
      h("label", { class: "inline-switch", for: "f-enable" }, enableInput, " Enabled"),
      errSlot("enable"),
    ),
  );

  ctx.root.append(
    pageHeader(editing ? `Edit webhook ${editName}` : "Create webhook", [h("a", { href: cancelHref, class: "btn" }, "Back")], h("a", { href: "#/webhooks" }, "Webhooks")),
    h("div", { class: "card form-card" }, form),
  );

  // -- fill ------------------------------------------------------------------------------------
  if (loaded) fill(loaded);
  else addHeaderRow("content-type", "application/json");
  syncGuarantees();
  if (readOnly) form.querySelectorAll("input, select, textarea, #add-header, .header-row button, #test-button").forEach((el) => (el.disabled = true));
  (editing ? descInput : nameInput).focus();

  function fill(cfg) {
    nameInput.value = cfg.name || "";
    descInput.value = cfg.description || "";
    enableInput.checked = cfg.enable !== false;
    const topics = Array.isArray(cfg.topics) ? cfg.topics : ["#"];
    const allTopics = topics.length === 1 && topics[0] === "#";
    if (cfg.events === "all" && allTopics) {
      triggerAll.checked = true;
    } else {
      // events "all" with narrower topics is shown as every event chosen: same meaning
      triggerChosen.checked = true;
      const chosen = cfg.events === "all" ? [...eventBoxes.keys()] : cfg.events || [];
      for (const name of chosen) {
        if (!eventBoxes.has(name)) chosenPanel.querySelector(".checks").append(eventBox({ name, kind: "message" }));
        eventBoxes.get(name).checked = true;
      }
    }
    topicsInput.value = topics.join("\n");
    syncTrigger();
    methodSelect.value = String(cfg.method || "post").toLowerCase();
    urlInput.value = cfg.url || "";
    for (const [k, v] of Object.entries(cfg.headers || {})) addHeaderRow(k, String(v));
    bodyInput.value = typeof cfg.body === "string" ? cfg.body : "";
    durableInput.checked = cfg.durable === true;
    deadInput.checked = cfg.dead_letter === true;
    for (const [field, control] of [...adv, ...guar]) {
      const v = cfg[field];
      if (v === undefined || v === null) continue;
      control.value = Array.isArray(v) ? v.join(", ") : String(v);
    }
  }

  // -- collect -------------------------------------------------------------------------------
  function collect() {
    const body = loaded ? JSON.parse(JSON.stringify(loaded)) : {};
    body.name = editing ? editName : nameInput.value.trim();
    body.description = descInput.value;
    body.enable = enableInput.checked;
    if (triggerAll.checked) {
      body.events = "all";
      body.topics = ["#"];
    } else {
      body.events = [...eventBoxes.values()].filter((b) => b.checked).map((b) => b.value);
      const topics = topicsInput.value.split("\n").map((t) => t.trim()).filter((t) => t !== "");
      const anyMessage = [...eventBoxes.values()].some((b) => b.checked && b.dataset.kind === "message");
      body.topics = topics.length || anyMessage ? topics : ["#"];
    }
    body.method = methodSelect.value;
    body.url = urlInput.value.trim();
    const headers = {};
    for (const r of headerRows.querySelectorAll(".header-row")) {
      const k = r.querySelector(".h-key").value.trim();
      const v = r.querySelector(".h-value").value;
      if (k === "" && v === "") continue;
      headers[k] = v;
    }
    body.headers = headers;
    if (bodyInput.value.trim() === "") delete body.body;
    else body.body = bodyInput.value;
    // the guarantees' values are sent while their switch is off too (what was stored stays)
    body.durable = durableInput.checked;
    body.dead_letter = deadInput.checked;
    for (const [field, control] of [...adv, ...guar]) {
      const [, , kind] = ADVANCED_FIELDS.get(field);
      const raw = control.value.trim();
      if (raw === "") {
        delete body[field];
        continue;
      }
      if (kind === "int") body[field] = /^-?\d+$/.test(raw) ? Number(raw) : raw;
      else if (kind === "duration" || kind === "size") body[field] = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
      else if (kind === "list") body[field] = raw.split(/[\s,]+/).filter(Boolean).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
      else if (kind === "secret") body[field] = control.value;
      else body[field] = raw;
    }
    return body;
  }

  // -- errors ----------------------------------------------------------------------------------
  function clearErrors() {
    summary.hidden = true;
    form.querySelectorAll(".field-error").forEach((el) => {
      el.hidden = true;
      clear(el);
    });
    form.querySelectorAll(".invalid").forEach((el) => {
      el.classList.remove("invalid");
      el.removeAttribute("aria-invalid");
    });
  }

  function markInvalid(el) {
    if (!el) return;
    el.classList.add("invalid");
    el.setAttribute("aria-invalid", "true");
  }

  function showSlot(slot, message) {
    replace(slot, message);
    slot.hidden = false;
  }

  // Put a 400's message next to the input its `field` names; returns that input (or null).
  function showFieldError(field, fullMessage) {
    if (!field) return null;
    const path = field.replace(/^\$\./, "").replace(/^webhooks\[\d+\]\./, "");
    // next to the field its name is implied: "url: 'x' is invalid; ..." -> "'x' is invalid; ..."
    const message = fullMessage.startsWith(field + ": ") ? fullMessage.slice(field.length + 2) : fullMessage;
    let m;
    if ((m = path.match(/^headers\.(.*)$/))) {
      const key = m[1].toLowerCase();
      for (const r of headerRows.querySelectorAll(".header-row")) {
        if (r.querySelector(".h-key").value.trim().toLowerCase() === key) {
          showSlot(r.querySelector(".field-error"), message);
          markInvalid(r.querySelector(".h-value"));
          markInvalid(r.querySelector(".h-key"));
          return r.querySelector(".h-value");
        }
      }
      showSlot(document.getElementById("err-headers"), message);
      return headerRows;
    }
    if ((m = path.match(/^topics(?:\[(\d+)\])?/))) {
      if (triggerAll.checked) {
        showSlot(document.getElementById("err-events"), message);
        return triggerAll;
      }
      showSlot(document.getElementById("err-topics"), m[1] !== undefined ? `Line ${Number(m[1]) + 1}: ${message}` : message);
      markInvalid(topicsInput);
      return topicsInput;
    }
    if ((m = path.match(/^events(?:\[(\d+)\])?/))) {
      showSlot(document.getElementById("err-events"), message);
      return triggerChosen.checked ? chosenPanel : triggerAll;
    }
    const base = path.split(/[.[]/)[0];
    const direct = { name: nameInput, description: descInput, enable: enableInput, url: urlInput, method: urlInput, body: bodyInput };
    if (direct[base]) {
      showSlot(document.getElementById("err-" + (base === "method" ? "url" : base)), message);
      markInvalid(direct[base]);
      return direct[base];
    }
    const toggles = { durable: durableInput, dead_letter: deadInput };
    if (guar.has(base) || toggles[base]) {
      const control = guar.get(base) || toggles[base];
      // a value refused while its switch is off is still shown (the switch stays as it is)
      for (const panel of [durablePanel, deadPanel]) if (panel.contains(control)) panel.hidden = false;
      showSlot(document.getElementById("err-" + base), message);
      markInvalid(control);
      return control;
    }
    if (adv.has(base)) {
      advanced.open = true;
      showSlot(document.getElementById("err-" + base), message);
      markInvalid(adv.get(base));
      return adv.get(base);
    }
    return null;
  }

  function showError(err, what) {
    const target = err.status === 400 ? showFieldError(err.field, err.message) : null;
    replace(summary, `${what}: ${err.message}`);
    summary.hidden = false;
    if (target && typeof target.focus === "function") target.focus();
    (target || summary).scrollIntoView({ block: "center", behavior: "instant" });
  }

  // -- Test --------------------------------------------------------------------------------------
  testButton.addEventListener("click", async () => {
    clearErrors();
    const body = collect();
    const name = body.name || "new-webhook";
    if (!body.name) body.name = name;
    testButton.disabled = true;
    replace(testButton, "Testing…");
    testResult.hidden = false;
    testResult.className = "test-result pending";
    replace(testResult, h("span", { class: "muted" }, `Sending a ${body.method.toUpperCase()} to the URL…`));
    try {
      const r = await api.post(`/webhooks/${api.seg(name)}/test`, body, { signal: ctx.signal });
      if (!ctx.alive()) return;
      renderTest(r);
    } catch (err) {
      if (err && err.name === "AbortError") return;
      testResult.className = "test-result bad";
      replace(testResult, h("strong", { dataset: { testid: "test-error" } }, "Not sent: "), err.message);
      if (err.status === 400) showFieldError(err.field, err.message);
    } finally {
      testButton.disabled = readOnly;
      replace(testButton, "Test");
    }
  });

  function renderTest(r) {
    const ok = !!r.ok;
    testResult.className = "test-result " + (ok ? "ok" : "bad");
    const parts = [];
    if (r.status !== null && r.status !== undefined) {
      parts.push(h("span", { class: "badge " + (ok ? "ok" : "bad"), dataset: { testid: "test-status" } }, `HTTP ${r.status}`));
    } else {
      parts.push(h("span", { class: "badge bad", dataset: { testid: "test-status" } }, "no answer"));
    }
    parts.push(" ", h("span", { dataset: { testid: "test-latency" } }, r.latency_ms !== null && r.latency_ms !== undefined ? fmtMs(r.latency_ms) : ""));
    parts.push(" ", h("span", { class: "muted" }, `${String(r.method || "").toUpperCase()} ${truncate(r.url || "", 90)}`));
    if (r.error) parts.push(h("div", { class: "test-error", dataset: { testid: "test-error" } }, "Error: ", r.error));
    if (r.body) parts.push(h("pre", { class: "test-body", dataset: { testid: "test-body" } }, r.body));
    else if (!r.error) parts.push(h("div", { class: "muted small" }, "(empty reply body)"));
    replace(testResult, h("div", { class: "test-head" }, h("strong", null, ok ? "Reached: " : "Failed: ")), parts);
  }

  // -- Save --------------------------------------------------------------------------------------
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (readOnly) return;
    clearErrors();
    const body = collect();
    saveButton.disabled = true;
    try {
      if (editing) await api.put("/webhooks/" + api.seg(editName), body, { signal: ctx.signal });
      else await api.post("/webhooks", body, { signal: ctx.signal });
      if (!ctx.alive()) return;
      flashNext(editing ? `Webhook "${body.name}" saved.` : `Webhook "${body.name}" created.`);
      location.hash = "#/webhooks";
    } catch (err) {
      if (err && err.name === "AbortError") return;
      showError(err, "Not saved");
    } finally {
      saveButton.disabled = readOnly;
    }
  });
}
