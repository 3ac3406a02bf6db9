// The admin UI in headless Chromium (Debian's, driven by playwright-core), with JavaScript
// off: every page must work without it. Logs in with the admin user and password, creates a
// REST tool with an invalid field (the error shows beside it) then a valid one, calls it in the
// tool tester, refreshes an upstream's catalog, checks that forms without (or with a wrong) CSRF
// token are refused, logs out, and checks that the old cookie is dead. A screenshot of each page
// goes to the artifacts directory.
//
// usage: node admin_ui.mjs BASE_URL BACKEND_URL UPSTREAM ARTIFACTS_DIR
// env: ADMIN_USER, ADMIN_PASSWORD; CHROMIUM (default /usr/bin/chromium)

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, backend, upstream, artifacts] = process.argv.slice(2);
const user = process.env.ADMIN_USER;
const password = process.env.ADMIN_PASSWORD;
mkdirSync(artifacts, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(`FAILED: ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let step = 0;
try {
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const shot = async (name) => {
    step += 1;
    await page.screenshot({ path: join(artifacts, `${String(step).padStart(2, "0")}-${name}.png`), fullPage: true });
  };
  // A page's own CSP must let its stylesheet load (and nothing break).
  const blocked = [];
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) blocked.push(m.text());
  });

  // Not logged in: the login page.
  let r = await page.goto(`${base}/admin`);
  check(page.url().endsWith("/admin/login"), `redirected to the login page, at ${page.url()}`);
  const csp = r.headers()["content-security-policy"] ?? "";
  check(csp.includes("default-src 'none'"), `a strict CSP: ${csp}`);
  await shot("login");

  // A wrong password is refused on the page.
  await page.fill("#user", user);
  await page.fill("#password", "not-the-password");
  await page.click("#login");
  check((await page.textContent("#form-error"))?.includes("Not logged in"), "a wrong password is refused");

  await page.fill("#user", user);
  await page.fill("#password", password);
  await page.click("#login");
  check(page.url().endsWith("/admin"), `logged in, at ${page.url()}`);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "mcpgw_admin");
  check(session && session.httpOnly && session.sameSite === "Strict", `the cookie: ${JSON.stringify(session)}`);
  check((await page.textContent("#count-gateways")).trim() === "1", "the overview counts the upstream");
  check((await page.content()).includes(upstream), "the overview lists the upstream's health");
  await shot("overview");

  // A REST tool with an invalid URL: the API's error beside the field.
  await page.goto(`${base}/admin/tools/new`);
  await page.fill("#name", "ui_weather");
  await page.fill("#url", "ftp://nowhere/weather");
  await page.selectOption("#method", "GET");
  await page.fill(
    "#input_schema",
    JSON.stringify({ type: "object", properties: { city: { type: "string", description: "Where" } }, required: ["city"] }),
  );
  await page.click("#save");
  const urlError = await page.textContent("#error-url");
  check(urlError && urlError.includes("http"), `the URL's error beside it: ${urlError}`);
  check((await page.inputValue("#name")) === "ui_weather", "the form keeps what was typed");
  await shot("tool-invalid");

  await page.fill("#url", `${backend}/weather`);
  await page.click("#save");
  check(page.url().includes("/admin/tools/") && page.url().includes("saved=1"), `saved, at ${page.url()}`);
  check((await page.inputValue("#url")) === `${backend}/weather`, "the saved tool is shown");
  await shot("tool-saved");

  await page.goto(`${base}/admin/tools?q=weather`);
  check((await page.locator("#records tr[data-name=ui_weather]").count()) === 1, "the search finds the tool");
  await shot("tools");

  // The tool tester: a form from the input schema, the call through the gateway's MCP path.
  await page.goto(`${base}/admin/test?tool=ui_weather`);
  await page.fill("#arg-city", "Lisbon");
  await shot("tester");
  await page.click("#run");
  const result = await page.textContent("#result");
  check(result.includes("Lisbon") && result.includes("temp_c"), `the tool's result: ${result}`);
  await shot("tester-result");
  // A required argument left out: the error beside it, no call.
  await page.goto(`${base}/admin/test?tool=ui_weather`);
  await page.click("#run");
  check((await page.textContent("#error-city"))?.includes("required"), "a missing argument is named");

  // An upstream's catalog, refreshed.
  await page.goto(`${base}/admin/gateways/${upstream}`);
  check((await page.textContent("#catalog")).includes("test_simple_text"), "the upstream's catalog is listed");
  await page.click("#refresh");
  check(page.url().includes("refreshed=1"), `refreshed, at ${page.url()}`);
  check((await page.textContent(".notice")).includes("refreshed"), "the refresh is confirmed");
  await shot("upstream");

  for (const [name, path] of [
    ["resources", "/admin/resources"],
    ["prompts", "/admin/prompts"],
    ["servers", "/admin/servers"],
    ["gateways", "/admin/gateways"],
    ["revocations", "/admin/revocations"],
  ]) {
    r = await page.goto(`${base}${path}`);
    check(r.status() === 200, `${path}: ${r.status()}`);
    await shot(name);
  }

  // Forms without the CSRF token, or with another, are refused (the session cookie alone is
  // not enough).
  for (const form of [{ name: "csrf_probe", url: `${backend}/weather` }, { name: "csrf_probe", url: `${backend}/weather`, _csrf: "forged" }]) {
    r = await page.request.post(`${base}/admin/tools/new`, { form, maxRedirects: 0 });
    check(r.status() === 403, `a form without its CSRF token: ${r.status()}`);
  }
  r = await page.request.get(`${base}/tools/csrf_probe`, {
    headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` },
  });
  check(r.status() === 404, `nothing was created by the refused forms: ${r.status()}`);

  // Logging out ends the session everywhere: the old cookie is refused afterwards.
  await page.goto(`${base}/admin`);
  await page.click("#logout");
  check(page.url().endsWith("/admin/login"), `logged out, at ${page.url()}`);
  await shot("logged-out");
  await context.addCookies([session]);
  await page.goto(`${base}/admin/tools`);
  check(page.url().endsWith("/admin/login"), `the old cookie no longer works, at ${page.url()}`);
  check(blocked.length === 0, `the CSP blocked nothing the pages use: ${blocked}`);
  console.log(`PASS admin ui (${step} screenshots in ${artifacts})`);
} finally {
  await browser.close();
}
