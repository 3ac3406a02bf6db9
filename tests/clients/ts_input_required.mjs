// A session-era client (the official TypeScript SDK 1.x) calling a 2026-07-28 upstream's
// multi round-trip tools (test_input_required_result_*) through mcpgw: the upstream's
// input_required must reach this client as real elicitation, sampling and roots requests, whose
// answers go back upstream, round after round, until the tool's result.
// usage: node ts_input_required.mjs URL   (the gateway's MCP endpoint for the upstream)
// Prints PASS and exits 0 when every check holds; throws (exit 1) on the first failure.

import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url] = process.argv.slice(2);
const client = new Client(
  { name: "mcpgw-ts-input-required", version: "1.0.0" },
  { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
);
const asked = [];
client.setRequestHandler(ListRootsRequestSchema, async () => {
  asked.push("roots");
  return { roots: [{ uri: "file:///tmp/ts-root", name: "ts-root" }] };
});
client.setRequestHandler(CreateMessageRequestSchema, async () => {
  asked.push("sampling");
  return { role: "assistant", content: { type: "text", text: "Paris, said typescript" }, model: "ts-model", stopReason: "endTurn" };
});
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  asked.push(`elicit:${req.params.message}`);
  const props = Object.keys(req.params.requestedSchema?.properties ?? {});
  const content = props.includes("color") ? { color: "teal" } : props.includes("ok") ? { ok: true } : { name: "Ada" };
  return { action: "accept", content };
});
await client.connect(new StreamableHTTPClientTransport(new URL(url)));

const names = new Set((await client.listTools()).tools.map((t) => t.name));
const text = (r) => r.content.filter((c) => c.type === "text").map((c) => c.text).join(" ");
const call = async (name) => {
  assert.ok(names.has(name), `${name} missing from ${[...names].sort()}`);
  asked.length = 0;
  const r = await client.callTool({ name, arguments: {} });
  assert.ok(!r.isError, `${name}: ${JSON.stringify(r)}`);
  return { text: text(r), asked: [...asked] };
};

let r = await call("test_input_required_result_elicitation");
assert.match(r.text, /Hello, Ada/);
assert.deepEqual(r.asked, ["elicit:What is your name?"]);
r = await call("test_input_required_result_sampling");
assert.match(r.text, /Paris, said typescript/);
assert.deepEqual(r.asked, ["sampling"]);
r = await call("test_input_required_result_list_roots");
assert.match(r.text, /file:\/\/\/tmp\/ts-root/);
assert.deepEqual(r.asked, ["roots"]);
r = await call("test_input_required_result_request_state");
assert.match(r.text, /state-ok/);
r = await call("test_input_required_result_multiple_inputs");
assert.match(r.text, /user=Ada greeting=Paris, said typescript roots=1/);
assert.deepEqual([...r.asked].sort(), ["elicit:What is your name?", "roots", "sampling"]);
r = await call("test_input_required_result_multi_round");
assert.match(r.text, /name=Ada color=teal/);
assert.deepEqual(r.asked, ["elicit:Step 1: What is your name?", "elicit:Step 2: What is your favorite color?"]);
const prompt = await client.getPrompt({ name: "test_input_required_result_prompt" });
assert.match(JSON.stringify(prompt.messages), /Context:/);
await client.close();
console.log("PASS typescript input_required");
