// Drives mcpgw with the official TypeScript SDK (@modelcontextprotocol/sdk).
// usage: node ts_client.mjs URL streamable|sse [--server]
// Prints PASS and exits 0 when every check holds; throws (exit 1) on the first failure.

import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, transportName, ...rest] = process.argv.slice(2);
const scoped = rest.includes("--server");
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

async function collect(fetchPage, key) {
  const items = [];
  let cursor;
  let pages = 0;
  do {
    const page = await fetchPage(cursor ? { cursor } : undefined);
    items.push(...page[key]);
    cursor = page.nextCursor;
    pages += 1;
    assert.ok(pages < 50, "pagination does not end");
  } while (cursor);
  return { items, pages };
}

// With MCPGW_TOKEN set (a gateway with auth on), every request carries it as a bearer token.
const auth = process.env.MCPGW_TOKEN ? { Authorization: `Bearer ${process.env.MCPGW_TOKEN}` } : {};
const withAuth = (u, init) => fetch(u, { ...init, headers: { ...(init?.headers ?? {}), ...auth } });
const client = new Client({ name: "mcpgw-ts-test", version: "1.0.0" });
const logs = [];
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params));
const transport =
  transportName === "sse"
    ? new SSEClientTransport(new URL(url), { requestInit: { headers: auth }, eventSourceInit: { fetch: withAuth } })
    : new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: auth } });
await client.connect(transport);

const tools = await collect((p) => client.listTools(p), "tools");
const names = tools.items.map((t) => t.name).sort();
if (scoped) {
  assert.deepEqual(names, ["weather"]);
} else {
  assert.deepEqual(names, ["broken", "echo", "filler_a", "filler_b", "weather"]);
  assert.ok(tools.pages >= 3, `expected several pages, got ${tools.pages}`);
}

const resources = await collect((p) => client.listResources(p), "resources");
const uris = resources.items.map((r) => r.uri).sort();
assert.deepEqual(uris, scoped ? ["docs://readme"] : ["docs://license", "docs://logo.png", "docs://readme"]);
const templates = await client.listResourceTemplates();
assert.deepEqual(templates.resourceTemplates.map((t) => t.uriTemplate), ["docs://pages/{page}"]);

const prompts = await collect((p) => client.listPrompts(p), "prompts");
assert.deepEqual(prompts.items.map((p) => p.name).sort(), scoped ? ["greet"] : ["describe_image", "greet", "review_page"]);

const weather = await client.callTool({ name: "weather", arguments: { city: "Lima" } });
assert.equal(weather.isError, false);
assert.match(weather.content[0].text, /"city":"Lima"/);

const readme = await client.readResource({ uri: "docs://readme" });
assert.equal(readme.contents[0].text, "# Hello from mcpgw");
const page = await client.readResource({ uri: "docs://pages/42" });
assert.equal(page.contents[0].text, "Page 42 of the docs");

const greet = await client.getPrompt({ name: "greet", arguments: { name: "Grace" } });
assert.equal(greet.messages[0].content.text, "Hello Grace!");
const completion = await client.complete({ ref: { type: "ref/prompt", name: "greet" }, argument: { name: "name", value: "g" } });
assert.deepEqual(completion.completion.values, ["Grace"]);

if (!scoped) {
  const logo = await client.readResource({ uri: "docs://logo.png" });
  assert.equal(logo.contents[0].blob, PNG);
  assert.equal(logo.contents[0].mimeType, "image/png");
  const img = await client.getPrompt({ name: "describe_image", arguments: {} });
  assert.equal(img.messages[0].content.text, "Describe this image in plain words.");
  assert.equal(img.messages[1].content.type, "image");
  const review = await client.getPrompt({ name: "review_page", arguments: { page: "faq" } });
  assert.equal(review.messages[0].content.resource.text, "Page faq of the docs");
  const broken = await client.callTool({ name: "broken", arguments: {} });
  assert.equal(broken.isError, true);
  assert.match(broken.content[0].text, /HTTP 500/);
  await client.setLoggingLevel("debug");
  await client.callTool({ name: "weather", arguments: { city: "Quito" } });
  for (let i = 0; i < 50 && logs.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(logs.some((l) => String(l.data).includes("Quito")), JSON.stringify(logs));
}

await assert.rejects(client.callTool({ name: "no_such_tool", arguments: {} }), /Unknown tool/);
await assert.rejects(client.readResource({ uri: "docs://missing" }), /not found/i);
await client.ping();
await client.close();
console.log(`PASS typescript ${transportName} scoped=${scoped}: ${tools.items.length} tools in ${tools.pages} pages`);
