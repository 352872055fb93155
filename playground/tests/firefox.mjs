// The playground in Firefox (headless, Debian's firefox-esr, driven over
// WebDriver BiDi by puppeteer-core: no browser download).
//   node tests/firefox.mjs ORIGIN SCREENSHOT
// Loads ORIGIN/graphql with every request elsewhere aborted, acts as 王建国,
// runs the "Me" example tab, waits for his balance in the result, saves a
// screenshot, and prints one JSON line: { shownMs, elsewhere, errors, result }.
// tests/test_browser.py runs it and judges the outcome.
import puppeteer from "puppeteer-core";

const [origin, screenshot] = process.argv.slice(2);
const executablePath = process.env.GONGJI_FIREFOX || "/usr/bin/firefox-esr";

const browser = await puppeteer.launch({ browser: "firefox", executablePath, headless: true });
const outcome = { shownMs: null, elsewhere: [], errors: [], result: "" };
const page = await browser.newPage();
try {
  await page.setViewport({ width: 1440, height: 900 });
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    const url = request.url();
    if (url.startsWith(`${origin}/`) || url.startsWith("data:")) return request.continue();
    outcome.elsewhere.push(url);
    return request.abort();
  });
  page.on("pageerror", (error) => outcome.errors.push(`page error: ${error}`));
  page.on("console", (message) => {
    if (message.type() === "error") outcome.errors.push(`console: ${message.text()}`);
  });

  const started = Date.now();
  await page.goto(`${origin}/graphql`);
  await page.waitForSelector("[data-persona=hb_wang_jianguo]");
  outcome.shownMs = Date.now() - started;

  await page.click("[data-persona=hb_wang_jianguo]");
  await page.waitForSelector("[data-logo-persona=hb_wang_jianguo]");
  // the tab named after the example's operation, "Me" (its close button says "icon")
  const tabs = await page.$$(".graphiql-tab");
  const names = await Promise.all(tabs.map((tab) => tab.evaluate((e) => e.innerText.trim())));
  await tabs[names.findIndex((name) => name.split(/\s/)[0] === "Me")].click();
  await page.click(".graphiql-execute-button");
  await page.waitForFunction(
    () => document.querySelector(".result-window")?.innerText.includes("3200.00"),
    { timeout: 15000 },
  );
  outcome.result = await page.$eval(".result-window", (element) => element.innerText);
} finally {
  await page.screenshot({ path: screenshot }).catch(() => {});
  await browser.close();
}
console.log(JSON.stringify(outcome));
