// Two upstreams at once through mcpgw's /mcp with the official TypeScript SDK: the project's
// fixture (fixture__*) and @modelcontextprotocol/server-everything (everything__*). Checks
// namespaced lists, calls to both, progress and log notifications during a call, and sampling
// and elicitation requests relayed to this client and answered.
// usage: node ts_federation.mjs URL CALLS_LOG   (the fixture's calls log, to see cancellations)
//        node ts_federation.mjs --stdio CALLS_LOG COMMAND [ARG ...]   (launches the gateway, e.g.
//        `mcpgw stdio` or `mcpgw connect URL`, and speaks to it over stdio)
//        node ts_federation.mjs ws://HOST/ws CALLS_LOG   (the SDK's WebSocket transport)
// Prints PASS and exits 0 when every check holds; throws (exit 1) on the first failure.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { WebSocketClientTransport } from "@modelcontextprotocol/sdk/client/websocket.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const stdio = process.argv[2] === "--stdio";
const [url, callsLog, command, ...args] = stdio ? [null, ...process.argv.slice(3)] : process.argv.slice(2);
const client = new Client(
  { name: "mcpgw-ts-federation", version: "1.0.0" },
  { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
);
client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: "file:///tmp/mcpgw-root", name: "mcpgw-root" }] }));
const logs = [];
const sampled = [];
const updated = [];
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updated.push(n.params.uri));
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params));
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  sampled.push(req.params);
  return { role: "assistant", content: { type: "text", text: "sampled-by-typescript" }, model: "mcpgw-test-model", stopReason: "endTurn" };
});
client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "accept", content: { username: "ts-user", email: "ts@example.com" } }));
await client.connect(
  stdio
    ? new StdioClientTransport({ command, args, env: { ...process.env }, stderr: "inherit" })
    : /^wss?:/.test(url)
      ? new WebSocketClientTransport(new URL(url))
      : new StreamableHTTPClientTransport(new URL(url)),
);

const tools = [];
let cursor;
do {
  const page = await client.listTools(cursor ? { cursor } : undefined);
  tools.push(...page.tools);
  cursor = page.nextCursor;
} while (cursor);
const names = new Set(tools.map((t) => t.name));
for (const n of ["fixture__test_sampling", "fixture__test_elicitation", "everything__echo", "everything__trigger-long-running-operation", "everything__trigger-sampling-request"]) {
  assert.ok(names.has(n), `${n} missing from ${[...names].sort()}`);
}
const text = (r) => r.content.filter((c) => c.type === "text").map((c) => c.text).join(" ");

assert.equal(text(await client.callTool({ name: "everything__echo", arguments: { message: "hi from ts" } })), "Echo: hi from ts");

const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
assert.ok(prompts.includes("fixture__test_simple_prompt"), `prompts: ${prompts}`);
const prompt = await client.getPrompt({ name: "fixture__test_simple_prompt" });
assert.ok(prompt.messages[0].content.text.includes("simple prompt"), JSON.stringify(prompt));
const read = await client.readResource({ uri: "test://static-text" });
assert.ok(read.contents[0].text.includes("static text"), JSON.stringify(read));

const progress = [];
const long = await client.callTool(
  { name: "everything__trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
  undefined,
  { onprogress: (p) => progress.push(p.progress) },
);
assert.ok(!long.isError, JSON.stringify(long));
// Over stdio and WebSocket the SDK reads the last progress notification and the result in one
// chunk when they come together, and handles the result first (its notification handlers run a
// tick later), so it drops that notification as one for an unknown token: one fewer is all such a
// client can count on.
const framed = stdio || /^wss?:/.test(url);
assert.ok(progress.length >= (framed ? 2 : 3), `progress: ${progress}`);

await client.setLoggingLevel("debug");
const before = logs.length;
await client.callTool({ name: "fixture__test_tool_with_logging", arguments: {} });
assert.ok(logs.length >= before + 3, `logs: ${JSON.stringify(logs.slice(before))}`);

const s1 = await client.callTool({ name: "everything__trigger-sampling-request", arguments: { prompt: "hello", maxTokens: 5 } });
assert.ok(text(s1).includes("sampled-by-typescript"), text(s1));
const s2 = await client.callTool({ name: "fixture__test_sampling", arguments: { prompt: "hello" } });
assert.ok(text(s2).includes("sampled-by-typescript"), text(s2));
assert.ok(sampled.length >= 2, `sampling requests: ${sampled.length}`);

const e = await client.callTool({ name: "fixture__test_elicitation", arguments: { message: "who are you?" } });
assert.ok(text(e).includes("ts-user"), text(e));

// Several calls at once on one session: each answer reaches its own request.
const many = await Promise.all(
  Array.from({ length: 8 }, (_, i) => client.callTool({ name: "everything__echo", arguments: { message: `n${i}` } })),
);
many.forEach((r, i) => assert.equal(text(r), `Echo: n${i}`));

// roots/list from an upstream reaches this client, and the answer goes back.
const roots = await client.callTool({ name: "everything__get-roots-list", arguments: {} });
assert.ok(text(roots).includes("file:///tmp/mcpgw-root"), text(roots));

// Cancelling a call cancels the upstream request serving it.
const abort = new AbortController();
const slow = client.callTool({ name: "fixture__mcpgw_sleep", arguments: { ms: 20000 } }, undefined, { signal: abort.signal });
// Cancel once the call is running upstream (the fixture logged it), not after a guessed delay.
const running = () => existsSync(callsLog) && readFileSync(callsLog, "utf8").includes('"mcpgw_sleep"');
for (let i = 0; i < 200 && !running(); i++) await new Promise((r) => setTimeout(r, 20));
assert.ok(running(), "the slow call never reached the upstream");
abort.abort("no longer needed");
await assert.rejects(slow);
const cancelled = () => existsSync(callsLog) && readFileSync(callsLog, "utf8").includes('"cancelled"');
for (let i = 0; i < 100 && !cancelled(); i++) await new Promise((r) => setTimeout(r, 50));
assert.ok(cancelled(), "the upstream never saw the cancellation");

// Subscriptions go to the upstream owning the URI, and its updates come back.
await client.subscribeResource({ uri: "test://watched-resource" });
const touched = await client.callTool({ name: "fixture__mcpgw_touch", arguments: { uri: "test://watched-resource" } });
assert.equal(text(touched), "notified");
for (let i = 0; i < 100 && !updated.includes("test://watched-resource"); i++) await new Promise((r) => setTimeout(r, 50));
assert.deepEqual(updated, ["test://watched-resource"]);
await client.unsubscribeResource({ uri: "test://watched-resource" });
assert.equal(
  text(await client.callTool({ name: "fixture__mcpgw_touch", arguments: { uri: "test://watched-resource" } })),
  "not subscribed",
);

await client.close();
console.log("PASS typescript federation");
