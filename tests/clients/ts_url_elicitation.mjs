// A URL elicitation answered as a person would, with the official TypeScript SDK: calls TOOL
// through the gateway as the holder of MCPGW_TOKEN; when the gateway asks the user to authorize
// an upstream (elicitation mode "url"), follows the link headlessly as a browser would (signs in
// to the gateway with the same token, logs in at the authorization server as LOGIN and
// consents), then accepts; the call must then succeed and say it ran as LOGIN, and the next call
// must ask nothing.
//
// usage: node ts_url_elicitation.mjs URL TOOL LOGIN SDK
//   SDK: v1 (@modelcontextprotocol/sdk 1.x, session era), v2-legacy (@modelcontextprotocol/client,
//   session era) or v2-2026 (@modelcontextprotocol/client pinned to 2026-07-28: the elicitation
//   arrives in input_required and the SDK retries the call itself).
// Prints PASS and exits 0 when every check holds; throws (exit 1) on the first failure.

import assert from "node:assert/strict";

const [url, tool, login, sdk] = process.argv.slice(2);
const token = process.env.MCPGW_TOKEN;
assert.ok(token, "MCPGW_TOKEN is required");

// A browser's cookies, per origin.
const jar = new Map();
const hidden = (page, name) => {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(page);
  assert.ok(m, `no ${name} in the page`);
  return m[1].replaceAll("&#x2f;", "/").replaceAll("&#x27;", "'").replaceAll("&quot;", '"').replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");
};
async function visit(at, form) {
  const origin = new URL(at).origin;
  const cookies = jar.get(origin) ?? new Map();
  const headers = {};
  if (cookies.size) headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  const init = { redirect: "manual", headers, signal: AbortSignal.timeout(30_000) };
  if (form) {
    init.method = "POST";
    init.body = new URLSearchParams(form);
  }
  const r = await fetch(at, init);
  for (const c of r.headers.getSetCookie()) {
    const [pair] = c.split(";");
    const i = pair.indexOf("=");
    if (/max-age=0/i.test(c)) cookies.delete(pair.slice(0, i).trim());
    else cookies.set(pair.slice(0, i).trim(), pair.slice(i + 1));
  }
  jar.set(origin, cookies);
  const location = r.headers.get("location");
  return { status: r.status, body: await r.text(), location: location ? new URL(location, at).href : null };
}

// Opens the gateway's connect link and goes through to the end.
async function follow(link) {
  const gateway = link.split("/oauth/")[0];
  let r = await visit(link);
  if (r.status === 200 && r.body.includes('id="login"')) {
    const back = await visit(`${gateway}/oauth/login`, { _csrf: hidden(r.body, "_csrf"), next: hidden(r.body, "next"), token });
    assert.equal(back.status, 303, back.body);
    r = await visit(link);
  }
  assert.equal(r.status, 303, r.body);
  let at = r.location;
  for (let i = 0; i < 12; i++) {
    if (at.startsWith(`${gateway}/oauth/callback?`) || at.startsWith(`${gateway}/oauth/callback/`)) {
      const done = await visit(at);
      assert.ok(done.status === 200 && done.body.includes("Connected to"), `${done.status} ${done.body}`);
      return;
    }
    let page = await visit(at);
    if (!page.location) {
      page = page.body.includes('name="password"')
        ? await visit(at, { prompt: "login", login, password: "any" })
        : await visit(at, { prompt: "consent" });
    }
    assert.ok(page.location, `${at}: ${page.status} ${page.body.slice(0, 300)}`);
    at = page.location;
  }
  throw new Error(`never sent back to the gateway: ${at}`);
}

const asked = [];
const onElicit = async (req) => {
  assert.equal(req.params.mode, "url", JSON.stringify(req.params));
  asked.push(req.params.url);
  await follow(req.params.url);
  return { action: "accept" };
};
const info = { name: "mcpgw-ts-url-elicitation", version: "1.0.0" };
const capabilities = { elicitation: { url: {} } };
const requestInit = { headers: { Authorization: `Bearer ${token}` } };
let client;
let transport;
if (sdk === "v1") {
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
  const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
  const { ElicitRequestSchema } = await import("@modelcontextprotocol/sdk/types.js");
  client = new Client(info, { capabilities });
  client.setRequestHandler(ElicitRequestSchema, onElicit);
  transport = new StreamableHTTPClientTransport(new URL(url), { requestInit });
} else {
  const { Client, StreamableHTTPClientTransport } = await import("@modelcontextprotocol/client");
  const mode = sdk === "v2-2026" ? { pin: "2026-07-28" } : "legacy";
  client = new Client(info, { capabilities, versionNegotiation: { mode } });
  client.setRequestHandler("elicitation/create", onElicit);
  transport = new StreamableHTTPClientTransport(new URL(url), { requestInit });
}
await client.connect(transport);
const whoami = async () => {
  const r = await client.callTool({ name: tool, arguments: {} });
  assert.ok(!r.isError, JSON.stringify(r));
  return JSON.parse(r.content[0].text);
};
assert.equal((await whoami()).sub, login);
assert.equal(asked.length, 1, JSON.stringify(asked));
// Connected now: the next call asks nothing.
assert.equal((await whoami()).sub, login);
assert.equal(asked.length, 1, JSON.stringify(asked));
await client.close();
console.log(`PASS url elicitation (${sdk}) as ${login}`);
