// One generate_video through the official Tasks client (@modelcontextprotocol/ext-tasks) on
// protocol 2026-07-28: it must come back as a task (kind "task"), be followed with tasks/get
// and settle "completed" with the saved-video block. Usage: node ext-tasks-generate.mjs URL
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import {
  createTaskSessionFromClient,
  resultFromTaskOutcome,
} from "@modelcontextprotocol/ext-tasks/client";

const url = process.argv[2];
const version = "2026-07-28";
const clientInfo = { name: "videogen-ci-ext-tasks", version: "1.0.0" };
const clientCapabilities = { extensions: { "io.modelcontextprotocol/tasks": {} } };

const client = new Client(clientInfo, {
  capabilities: clientCapabilities,
  versionNegotiation: { mode: { pin: version } },
});
await client.connect(new StreamableHTTPClientTransport(new URL(url)));

let nextId = 1;
// The host's own request path for the task wire shapes (the SDK's codecs do not know them):
// one JSON-RPC POST; the answer is JSON or an SSE stream carrying it.
async function rawDispatch(request, options = {}) {
  const message = { jsonrpc: "2.0", id: nextId++, ...request };
  const params = message.params ?? {};
  const name = message.method === "tools/call" ? params.name : params.taskId;
  const headers = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "mcp-protocol-version": version,
    "mcp-method": message.method,
    ...(typeof name === "string" ? { "mcp-name": name } : {}),
  };
  const response = await fetch(url, {
    method: "POST",
    headers,
    body: JSON.stringify(message),
    signal: options.signal,
  });
  const text = await response.text();
  const bodies = (response.headers.get("content-type") ?? "").includes("text/event-stream")
    ? text.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim())
    : [text];
  for (const body of bodies) {
    if (!body) continue;
    const answer = JSON.parse(body);
    if (answer.id !== message.id) continue;
    return answer.error ? { kind: "error", error: answer.error } : { kind: "result", result: answer.result };
  }
  throw new Error(`no answer to ${message.method} (HTTP ${response.status}): ${text.slice(0, 300)}`);
}

const session = createTaskSessionFromClient(client, {
  endpointId: "videogen-ci",
  rawDispatch,
  v2RequestFraming: { protocolVersion: version, clientInfo, clientCapabilities },
});
try {
  const execution = await session.callTool("generate_video", {
    prompt: "a paper boat on a pond",
    provider: "volcengine",
  });
  const statuses = [];
  const { outcome } = await execution.settle({
    onEvent: (event) => {
      if (event.type === "task") statuses.push(`${event.task.status}: ${event.task.statusMessage}`);
    },
  });
  const result = resultFromTaskOutcome(outcome);
  const text = result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");
  console.log(`execution kind: ${execution.kind}`);
  for (const status of statuses) console.log(`  task ${status}`);
  console.log(text);
  if (execution.kind !== "task") throw new Error("generate_video did not answer with a task");
  if (outcome.status !== "completed" || result.isError) throw new Error("the task did not complete");
  if (!text.includes("**Generated Video:**")) throw new Error("no saved-video block in the result");
} finally {
  await session.close();
  await client.close();
}
