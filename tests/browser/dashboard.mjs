// Browser scenarios for the dashboard, run by tests/browser.rs against a real daemon:
//   node dashboard.mjs <scenario>
// The Rust side starts the daemon with real tools, passes what the scenario needs in the
// environment (SDLC_BASE, SDLC_LOGIN, SDLC_TOKEN, SDLC_SHOTS, SDLC_ARGS as JSON) and checks
// the database afterwards. A scenario prints one JSON line with what it saw, or throws
// (exit 1, with the reason on stderr). Every wait is for a condition, never a fixed time.
import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";

const base = process.env.SDLC_BASE;
const loginUrl = process.env.SDLC_LOGIN;
const token = process.env.SDLC_TOKEN;
const shots = process.env.SDLC_SHOTS;
const args = JSON.parse(process.env.SDLC_ARGS || "{}");
const scenario = process.argv[2];

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function shot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

// The management API, with the bearer token (what a script or the CLI would do).
async function api(method, path, body) {
  const response = await fetch(base + "/api/orchestrator" + path, {
    method,
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

async function loggedIn(browser, viewport) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: viewport || { width: 1280, height: 900 } });
  context.setDefaultTimeout(20000);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(err.message));
  await page.goto(loginUrl);
  check(new URL(page.url()).pathname === "/", `login should land on the overview, not ${page.url()}`);
  check(!page.url().includes("token"), `the token should leave the address bar: ${page.url()}`);
  await page.locator("#live-state.on").waitFor();
  return { context, page, errors };
}

// Marks the document, to prove later that it was updated in place, not reloaded.
async function mark(page) {
  await page.evaluate(() => { window.__notReloaded = true; });
}

async function stillSameDocument(page) {
  return page.evaluate(() => window.__notReloaded === true);
}

const scenarios = {
  // Log in through the printed address; the cookie is HttpOnly and SameSite=Strict; the
  // overview shows the counts; a new action's row turns completed on the runs page without a
  // reload; a phone-sized window still shows the page.
  async live(browser) {
    const { context, page, errors } = await loggedIn(browser);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "sdlc_session");
    check(session && session.httpOnly && session.sameSite === "Strict", `session cookie: ${JSON.stringify(session)}`);
    check(await page.evaluate(() => document.cookie.includes("sdlc_session")) === false, "the page script must not see the cookie");
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    await shot(page, "overview");
    await page.emulateMedia({ colorScheme: "dark" });
    const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    check(dark !== "rgb(247, 247, 248)", `the dark scheme should change the background: ${dark}`);
    await shot(page, "overview-dark");
    await page.emulateMedia({ colorScheme: "light" });

    await page.goto(base + "/runs");
    await mark(page);
    await page.locator("#live-state.on").waitFor();
    const added = await api("POST", "/actions", { label: "live-row", tool_name: args.tool, at: "now+2s" });
    const row = page.locator(`tr[data-id="${added.id}"]`);
    await row.waitFor();
    const first = await row.locator(".badge").textContent();
    await row.locator(".badge", { hasText: "completed" }).waitFor({ timeout: 30000 });
    check(await stillSameDocument(page), "the runs page reloaded instead of updating in place");
    await shot(page, "runs");

    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, storageState: await context.storageState() });
    const small = await phone.newPage();
    await small.goto(base + "/runs");
    await small.locator(`tr[data-id="${added.id}"]`).waitFor();
    const width = await small.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 420, `the runs page is ${width}px wide in a 390px window`);
    await phone.close();
    check(errors.length === 0, `script errors: ${errors.join("; ")}`);
    return { id: added.id, first_status: first };
  },

  // Filters and keyset pages of the history, then the CSV of the filter, saved where the
  // Rust side parses it.
  async history(browser) {
    const { page } = await loggedIn(browser);
    await page.goto(base + "/runs");
    await page.getByLabel("Label").fill(args.label);
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/label=/);
    const seen = new Set();
    const pages = [];
    for (;;) {
      const ids = await page.locator("tr[data-id]").evaluateAll((rows) => rows.map((r) => r.dataset.id));
      for (const id of ids) {
        check(!seen.has(id), `row ${id} shown on two pages`);
        seen.add(id);
      }
      pages.push(ids.length);
      const older = page.getByRole("link", { name: "Older →" });
      if ((await older.count()) === 0) break;
      await older.click();
      await page.waitForLoadState();
    }
    await page.goto(base + "/runs?label=" + encodeURIComponent(args.label) + "&status=failed");
    const failed = await page.locator("tr[data-id]").count();
    const badges = await page.locator("tr[data-id] .badge").allTextContents();
    check(badges.every((b) => b === "failed"), `status filter shows ${badges}`);
    await page.goto(base + "/runs?label=" + encodeURIComponent(args.label));
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "CSV" }).click()]);
    await download.saveAs(args.csv);
    const [jsonl] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "JSONL" }).click()]);
    await jsonl.saveAs(args.jsonl);
    // Search by id opens the action.
    const some = [...seen][0];
    await page.getByLabel("Action id").fill(some);
    await page.getByRole("button", { name: "Open" }).click();
    await page.waitForURL(new RegExp("/actions/" + some));
    await page.getByRole("heading", { name: "Input" }).waitFor();
    await shot(page, "action");
    return { pages, total: seen.size, failed };
  },

  // The Groups page: a run id's row shows its state; when its open run is reported done the
  // row turns completed in place; its link opens the Runs page filtered by it.
  async groups(browser) {
    const { page, errors } = await loggedIn(browser);
    await page.getByRole("link", { name: "Groups" }).click();
    await page.getByRole("heading", { name: "Run groups" }).waitFor();
    const row = page.locator(`tr[data-run-id="${args.run_id}"]`);
    const state = row.locator("td.state .badge");
    const before = (await state.textContent()).trim();
    await mark(page);
    await api("PATCH", "/actions/" + args.open, { status: "succeeded" });
    await row.locator("td.state .badge", { hasText: /^completed$/ }).waitFor();
    const after = (await state.textContent()).trim();
    check(await stillSameDocument(page), "the row should update in place, not by a reload");
    await shot(page, "groups");
    await row.getByRole("link", { name: args.run_id }).click();
    await page.waitForURL(/\/runs\?run_id=/);
    const filter = await page.getByLabel("Run id").inputValue();
    const runs = await page.locator("tr[data-id]").evaluateAll((rows) => rows.map((r) => r.dataset.id));
    check(errors.length === 0, `page errors: ${errors}`);
    return { before, after, filter, runs };
  },

  // A running action's page shows its log as the tool prints it, and the rest once it ends.
  async log(browser) {
    const { page, errors } = await loggedIn(browser);
    await page.goto(base + "/actions/" + args.id);
    const box = page.locator("pre[data-log]");
    // The tool waits for the file before its second line: this one came live.
    await page.waitForFunction(() => document.querySelector("pre[data-log]").textContent.includes("compiling step 1"));
    const live = await box.textContent();
    writeFileSync(args.go, "");
    await page.waitForFunction(() => document.querySelector("pre[data-log]").dataset.loaded === "1");
    const whole = await box.textContent();
    await shot(page, "action-log");
    check(errors.length === 0, `page errors: ${errors.join("; ")}`);
    return { live, whole, markup: await box.evaluate((el) => el.children.length) };
  },

  // Approve an awaiting action from the overview with a note; its entry leaves the list.
  async approve(browser) {
    const { page } = await loggedIn(browser);
    await mark(page);
    const item = page.locator(`#awaiting li[data-id="${args.id}"]`);
    await item.waitFor();
    await shot(page, "overview-awaiting");
    await item.getByPlaceholder("Note (optional)").fill(args.note);
    await item.getByRole("button", { name: "Approve" }).click();
    await page.locator("#flash", { hasText: "Approved" }).waitFor();
    await item.waitFor({ state: "detached" });
    check(await stillSameDocument(page), "approving reloaded the page");
    await page.goto(base + "/actions/" + args.id);
    const approver = await page.locator("[data-approver]").textContent();
    return { approver };
  },

  // Edit a pending action's label and input on its page; a bad input is refused in the page.
  async edit(browser) {
    const { page } = await loggedIn(browser);
    await page.goto(base + "/actions/" + args.id);
    const form = page.locator("form.edit");
    await form.getByLabel("Input (JSON)").fill("{not json");
    await form.getByRole("button", { name: "Save" }).click();
    await page.locator("#flash.bad", { hasText: "tool_input is not valid JSON" }).waitFor();
    await form.getByLabel("Label").fill(args.label);
    await form.getByLabel("Input (JSON)").fill(JSON.stringify(args.input));
    await form.getByLabel("Every").fill("10m");
    await form.getByRole("button", { name: "Save" }).click();
    await page.getByRole("heading", { name: args.label }).waitFor();
    const schedule = await page.locator(".facts").textContent();
    check(schedule.includes("every 10 min"), `the schedule should read every 10 min: ${schedule}`);
    // An error from the API is shown, not swallowed: an unknown time zone.
    await page.locator("form.edit").getByLabel("Cron").fill("0 9 * * *");
    await page.locator("form.edit").getByLabel("Time zone").fill("Mars/Olympus");
    await page.locator("form.edit").getByRole("button", { name: "Save" }).click();
    const refused = await page.locator("#flash.bad").textContent();
    check(/Mars\/Olympus/.test(refused), `the refusal should name the zone: ${refused}`);
    return { refused };
  },

  // Without a session every page asks for the token; a cross-origin POST changes nothing.
  async guard(browser) {
    const stranger = await browser.newContext();
    const page = await stranger.newPage();
    for (const path of ["/", "/runs", "/actions/" + args.id]) {
      await page.goto(base + path);
      check(new URL(page.url()).pathname === "/login", `${path} without a session went to ${page.url()}`);
      await page.getByLabel("Token").waitFor();
    }
    await shot(page, "login");
    // A wrong token is refused in the page.
    await page.getByLabel("Token").fill("not-the-token");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.locator(".error", { hasText: "not valid" }).waitFor();
    await stranger.close();

    const { context, page: ours } = await loggedIn(browser);
    const csrf = await ours.locator('meta[name="csrf-token"]').getAttribute("content");
    // With the session cookie and even the right CSRF token, a request whose Origin is
    // another site's is refused.
    const forged = await context.request.post(`${base}/api/orchestrator/actions/${args.id}/cancel`, {
      headers: { Origin: "http://evil.example", "X-CSRF-Token": csrf },
    });
    const forgedBody = await forged.text();
    check(forged.status() === 403, `forged origin: ${forged.status()} ${forgedBody}`);
    // Without the CSRF token, our own origin is refused too.
    const tokenless = await context.request.post(`${base}/api/orchestrator/actions/${args.id}/cancel`, {
      headers: { Origin: base },
    });
    check(tokenless.status() === 403, `no CSRF token: ${tokenless.status()}`);
    // A page on another origin posting with the browser's credentials: the SameSite=Strict
    // cookie is not sent, so the daemon refuses it (the page cannot read the answer either).
    const other = base.replace("127.0.0.1", "localhost");
    await ours.goto(other + "/login");
    const sent = await ours.evaluate(async (url) => {
      try {
        await fetch(url, { method: "POST", credentials: "include", mode: "no-cors" });
        return "sent";
      } catch (err) {
        return "blocked: " + err.message;
      }
    }, `${base}/api/orchestrator/actions/${args.id}/cancel`);
    return { forged: forged.status(), forged_body: forgedBody, cross_site: sent };
  },
};

// Start a plan run from its page and watch the graph reach succeeded, live.
scenarios.plan = async (browser) => {
  const { page, errors } = await loggedIn(browser);
  await page.goto(base + "/plans");
  await page.locator(`article[data-plan="${args.plan}"] svg.dag`).waitFor();
  await shot(page, "plans");
  await page.goto(base + "/plans/" + args.plan);
  await page.getByLabel("target").fill(args.target);
  await page.getByRole("button", { name: "Start a run" }).click();
  await page.waitForURL(/\/plan-runs\//);
  await page.locator("#live-state.on").waitFor();
  await mark(page);
  // Every status a node shows on the way, recorded as the page changes itself.
  await page.evaluate(() => {
    window.__seen = new Set();
    const note = () => document.querySelectorAll("svg.dag g.node").forEach((n) => window.__seen.add(n.dataset.step + ":" + n.dataset.status));
    note();
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true });
  });
  await page.locator('#plan-run[data-status="succeeded"]').waitFor({ timeout: 60000 });
  const nodes = await page.locator("svg.dag g.node").evaluateAll((ns) => ns.map((n) => n.dataset.step + ":" + n.dataset.status));
  check(nodes.every((n) => n.endsWith(":succeeded")), `every step should have succeeded: ${nodes}`);
  check(await stillSameDocument(page), "the run page reloaded instead of updating in place");
  const seen = await page.evaluate(() => [...window.__seen]);
  await shot(page, "plan-run");
  check(errors.length === 0, `script errors: ${errors.join("; ")}`);
  return { run_id: new URL(page.url()).pathname.split("/").pop(), nodes, seen };
};

// Add a route with a preview, then see a refused (unsigned) request and an accepted one
// show up live on the Webhooks page.
scenarios.webhooks = async (browser) => {
  const { page } = await loggedIn(browser);
  await page.goto(base + "/webhooks");
  const form = page.locator("#add-route");
  await form.getByLabel("Path").fill("deploy");
  await form.getByLabel("Tool").selectOption(args.tool);
  await form.getByLabel("Input template").fill('{"ref": {{payload.ref}}}');
  await page.locator("#sample-body").fill('{"ref": "refs/heads/main"}');
  await form.getByRole("button", { name: "Preview" }).click();
  await page.locator("#preview-out", { hasText: "refs/heads/main" }).waitFor();
  const previewed = await page.locator("#preview-out").textContent();
  await form.getByRole("button", { name: "Add route" }).click();
  await page.locator('tr[data-route="deploy"]').waitFor();
  // The page reloaded after adding: its event stream must be open before the requests, or
  // it would not hear of them.
  await page.locator("#live-state.on").waitFor();
  await mark(page);
  // The signed route the Rust side made refuses an unsigned request.
  const refused = await fetch(base + "/webhooks/" + args.signed, { method: "POST", body: "{}" });
  check(refused.status === 401, `unsigned request: ${refused.status}`);
  await page.locator('#deliveries tr[data-outcome="rejected_signature"]').waitFor();
  const accepted = await fetch(base + "/webhooks/deploy", { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"ref": "refs/heads/main"}' });
  check(accepted.status === 202, `accepted request: ${accepted.status}`);
  const { id } = await accepted.json();
  await page.locator(`#deliveries tr[data-outcome="accepted"] a[href="/actions/${id}"]`).waitFor();
  check(await stillSameDocument(page), "the webhooks page reloaded");
  const why = await page.locator('#deliveries tr[data-outcome="rejected_signature"] td.reason').textContent();
  await shot(page, "webhooks");
  return { previewed, accepted_id: id, why };
};

// A recurring series shows its strip of outcomes; a tool is tried from its page.
scenarios.schedules = async (browser) => {
  const { page } = await loggedIn(browser);
  await page.goto(base + "/schedules");
  const row = page.locator(`tr[data-series="${args.series}"]`);
  await row.waitFor();
  const marks = await row.locator(".mark.st-completed").count();
  await shot(page, "schedules");
  await page.goto(base + "/tools");
  const tool = page.locator(`article[data-tool="${args.tool}"]`);
  await tool.getByLabel("Input (JSON)").fill('{"name": "dashboard"}');
  await tool.getByRole("button", { name: "Try it" }).click();
  await tool.locator(".try-out", { hasText: '"ok": true' }).waitFor();
  const answer = JSON.parse(await tool.locator(".try-out").textContent());
  await shot(page, "tools");
  return { marks, answer };
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario '${scenario}': one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.SDLC_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
try {
  const result = await run(browser);
  console.log(JSON.stringify(result));
} catch (err) {
  console.error(`scenario ${scenario} failed: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
