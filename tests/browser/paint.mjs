// Figure 9b of sdlc-bench: the first contentful paint of each dashboard page in headless
// Chromium, with a session cookie. Prints [{"path", "first_contentful_paint_ms"}] as JSON.
// Each page is opened twice and the second is kept: the first fetches the stylesheet and
// script, which the browser then caches (as it does for a user after the first page).
import { chromium } from "playwright-core";

const base = process.env.SDLC_BASE;
const [name, value] = process.env.SDLC_COOKIE.split("=");
const pages = JSON.parse(process.env.SDLC_PAGES);
const browser = await chromium.launch({
  executablePath: process.env.SDLC_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
const context = await browser.newContext();
await context.addCookies([{ name, value, url: base }]);
const results = [];
for (const path of pages) {
  let paint = null;
  for (let round = 0; round < 2; round++) {
    const page = await context.newPage();
    await page.goto(base + path, { waitUntil: "load" });
    paint = await page.evaluate(() => new Promise((resolve) => {
      const found = () => performance.getEntriesByName("first-contentful-paint")[0];
      if (found()) return resolve(found().startTime);
      new PerformanceObserver(() => found() && resolve(found().startTime)).observe({ type: "paint", buffered: true });
    }));
    await page.close();
  }
  results.push({ path, first_contentful_paint_ms: paint });
}
await browser.close();
console.log(JSON.stringify(results));
