// sdlc orchestrate dashboard: live updates and the changes a user asks for.
//
// - Listens to /api/orchestrator/events (Server-Sent Events). When an event says something a
//   live region of the page shows has changed (data-live="actions run stats"), the page is
//   fetched again and those regions are swapped for their fresh copies, at most a few times a
//   second. The browser reconnects by itself with Last-Event-ID; `resync` reloads every region.
// - Buttons with data-post, forms with data-api and approval forms send JSON to the API with
//   the session's CSRF token and show the answer (or its error) in the flash bar.
// - Relative times (<time data-rel>) are kept fresh; their title shows the local time.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
const flashBar = document.getElementById("flash");

function flash(message, good) {
  if (!flashBar) return;
  flashBar.textContent = message;
  flashBar.className = "flash " + (good ? "good" : "bad");
  flashBar.hidden = false;
  clearTimeout(flash.timer);
  if (good) flash.timer = setTimeout(() => { flashBar.hidden = true; }, 4000);
}

// --- relative times -------------------------------------------------------------------

function relative(ms) {
  const secs = Math.round(ms / 1000);
  const span = Math.abs(secs);
  if (span < 2) return "just now";
  let text;
  if (span < 60) text = span + " s";
  else if (span < 3600) text = Math.floor(span / 60) + " min";
  else if (span < 86400) text = Math.floor(span / 3600) + " h";
  else text = Math.floor(span / 86400) + " d";
  return secs > 0 ? "in " + text : text + " ago";
}

function refreshTimes(root) {
  const now = Date.now();
  for (const el of (root || document).querySelectorAll("time[data-rel]")) {
    const at = Date.parse(el.getAttribute("datetime"));
    if (Number.isNaN(at)) continue;
    el.textContent = relative(at - now);
    if (!el.dataset.local) {
      el.title = new Date(at).toLocaleString() + " (" + el.title + ")";
      el.dataset.local = "1";
    }
  }
}

// --- live regions ---------------------------------------------------------------------

const pending = new Set();
let refreshing = false;
let refreshTimer = null;

function regionsFor(kinds) {
  return [...document.querySelectorAll("[data-live]")].filter((el) => {
    const wants = el.dataset.live.split(/\s+/).filter(Boolean);
    return kinds === null || wants.some((kind) => kinds.has(kind));
  });
}

// A region the user is typing in is left alone until they are done.
function busy(region) {
  const active = document.activeElement;
  return active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName) && active.value !== "";
}

function scheduleRefresh(kind) {
  pending.add(kind);
  if (refreshTimer) return;
  refreshTimer = setTimeout(refresh, 250);
}

async function refresh() {
  refreshTimer = null;
  if (refreshing) { refreshTimer = setTimeout(refresh, 250); return; }
  const kinds = pending.has("*") ? null : new Set(pending);
  pending.clear();
  const regions = regionsFor(kinds);
  if (regions.length === 0) return;
  refreshing = true;
  try {
    const response = await fetch(location.href, { headers: { "X-Requested-With": "live" }, credentials: "same-origin" });
    if (response.redirected && new URL(response.url).pathname === "/login") { location.href = response.url; return; }
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const region of regions) {
      const copy = region.id && fresh.getElementById(region.id);
      if (!copy) continue;
      if (busy(region)) { pending.add(kinds === null ? "*" : [...kinds][0]); continue; }
      for (const { name, value } of copy.attributes) {
        if (region.getAttribute(name) !== value) region.setAttribute(name, value);
      }
      if (copy.innerHTML !== region.innerHTML) {
        region.innerHTML = copy.innerHTML;
        refreshTimes(region);
      }
    }
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (err) {
    // A daemon restarting: the event stream's reconnect brings a resync.
  } finally {
    refreshing = false;
    if (pending.size && !refreshTimer) refreshTimer = setTimeout(refresh, 1000);
  }
}

function showStats(stats) {
  const set = (name, value) => {
    for (const el of document.querySelectorAll('[data-stat="' + name + '"]')) el.textContent = value;
  };
  if (stats.engine) {
    set("busy", stats.engine.busy);
    set("max", stats.engine.max_concurrency);
  }
  set("inbox", stats.webhook_inbox);
}

function connect() {
  const state = document.getElementById("live-state");
  const mark = (on, text) => {
    if (!state) return;
    state.className = "live-state " + (on ? "on" : "off");
    state.textContent = text;
    state.title = "Live updates: " + text;
  };
  const events = new EventSource("/api/orchestrator/events");
  events.addEventListener("open", () => mark(true, "live"));
  events.addEventListener("error", () => mark(false, "reconnecting"));
  events.addEventListener("hello", () => mark(true, "live"));
  events.addEventListener("resync", () => { mark(true, "live"); scheduleRefresh("*"); });
  events.addEventListener("actions", () => scheduleRefresh("actions"));
  events.addEventListener("run", () => scheduleRefresh("run"));
  events.addEventListener("delivery", () => scheduleRefresh("delivery"));
  events.addEventListener("stats", (event) => {
    try { showStats(JSON.parse(event.data)); } catch (err) { /* a malformed event changes nothing */ }
    scheduleRefresh("stats");
  });
  window.addEventListener("beforeunload", () => events.close());
}

// --- changes asked for ------------------------------------------------------------------

async function send(method, url, body) {
  const headers = { "X-CSRF-Token": csrf };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let answer = null;
  try { answer = await response.json(); } catch (err) { /* no JSON body */ }
  if (!response.ok) {
    const reason = answer && answer.error ? answer.error : response.status + " " + response.statusText;
    throw new Error(reason);
  }
  return answer;
}

async function withButton(button, work) {
  if (button) button.disabled = true;
  try { await work(); } catch (err) { flash(err.message, false); } finally { if (button) button.disabled = false; }
}

// The webhooks page's preview: the add form's template rendered against the sample body.
async function preview(button) {
  const form = document.getElementById(button.dataset.preview);
  const out = form.querySelector("#preview-out");
  const body = { input_template: form.elements.input_template.value, body: document.getElementById("sample-body").value };
  out.hidden = false;
  try {
    const answer = await send("POST", "/api/orchestrator/webhooks/preview", body);
    out.classList.remove("error");
    out.textContent = JSON.stringify(answer.input, null, 2);
  } catch (err) {
    out.classList.add("error");
    out.textContent = err.message;
  }
}

document.addEventListener("click", (event) => {
  const previewButton = event.target.closest("button[data-preview]");
  if (previewButton) { event.preventDefault(); preview(previewButton); return; }
  const button = event.target.closest("button[data-post]");
  if (!button) return;
  event.preventDefault();
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  withButton(button, async () => {
    await send(button.dataset.method || "POST", button.dataset.post);
    flash(button.dataset.done || "Done", true);
    if (button.dataset.then) location.href = button.dataset.then;
    else scheduleRefresh("*");
  });
});

// The fields of an edit form that the user changed, as the API's JSON.
function changedFields(form) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name || el.type === "submit" || el.hasAttribute("data-skip")) continue;
    if (el.value === el.defaultValue) continue;
    const value = el.value.trim();
    if (value === "") continue;
    if (el.hasAttribute("data-json")) {
      try { body[el.name] = JSON.parse(value); } catch (err) { throw new Error(el.name + " is not valid JSON: " + err.message); }
    } else {
      body[el.name] = value;
    }
  }
  return body;
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.matches("form[data-decide]")) {
    event.preventDefault();
    const verdict = event.submitter && event.submitter.value === "reject" ? "reject" : "approve";
    const note = form.elements.note ? form.elements.note.value.trim() : "";
    // The approver is whoever the session's token proves: the page does not say.
    const body = {};
    if (note) body.note = note;
    withButton(event.submitter, async () => {
      await send("POST", form.dataset.decide + "/" + verdict, body);
      if (form.elements.note) form.elements.note.value = "";
      flash(verdict === "approve" ? "Approved" : "Rejected", true);
      scheduleRefresh("*");
    });
  } else if (form.matches("form[data-start-plan]")) {
    event.preventDefault();
    const vars = {};
    for (const el of form.querySelectorAll("[data-var]")) if (el.value.trim() !== "") vars[el.name] = el.value;
    withButton(event.submitter, async () => {
      const answer = await send("POST", "/api/orchestrator/plans/" + encodeURIComponent(form.dataset.startPlan) + "/runs", { vars });
      location.href = "/plan-runs/" + answer.run_id;
    });
  } else if (form.matches("form[data-try]")) {
    event.preventDefault();
    const out = form.querySelector(".try-out");
    withButton(event.submitter, async () => {
      let input;
      try { input = JSON.parse(form.elements.input.value || "{}"); } catch (err) { throw new Error("the input is not valid JSON: " + err.message); }
      out.hidden = false;
      out.textContent = "running…";
      try {
        const answer = await send("POST", "/api/orchestrator/tools/" + encodeURIComponent(form.dataset.try) + "/run", { input });
        out.classList.toggle("error", !answer.ok);
        out.textContent = JSON.stringify(answer, null, 2);
      } catch (err) {
        out.classList.add("error");
        out.textContent = err.message;
      }
    });
  } else if (form.matches("form[data-api]")) {
    event.preventDefault();
    withButton(event.submitter, async () => {
      const body = changedFields(form);
      if (Object.keys(body).length === 0) { flash("Nothing changed", false); return; }
      await send(form.dataset.method || "POST", form.dataset.api, body);
      flash(form.dataset.done || "Saved", true);
      location.reload();
    });
  }
});

// --- run logs ---------------------------------------------------------------------------

// Fills each log box from the API; a running run's log is read as a stream until it ends.
// Text goes in as text: a tool's output is never markup.
async function showLog(box) {
  const follow = box.dataset.follow === "1";
  const url = box.dataset.log + (follow ? "?follow=1" : "");
  box.textContent = "";
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) { box.textContent = "the log could not be read: " + response.status; return; }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const stuck = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      box.textContent += decoder.decode(value, { stream: true });
      if (stuck) box.scrollTop = box.scrollHeight;
    }
    box.textContent += decoder.decode();
    if (box.textContent === "") box.textContent = "(it printed nothing)";
    box.dataset.loaded = "1";
  } catch (err) {
    box.textContent += "\n[the log's stream broke off: reload to read on]";
  }
}

for (const box of document.querySelectorAll("pre[data-log]")) showLog(box);

refreshTimes();
setInterval(refreshTimes, 15000);
connect();
