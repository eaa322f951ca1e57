// `helm test <release>`: an agent's first minute through the MCP Service — initialize, create a
// Python environment, run code in it, read the result, destroy it. Plain Node (fetch), no
// dependencies: it runs in the gateway image. Exits non-zero with the step that failed.
import { readFileSync } from 'node:fs';

const url = process.env.WAGGLE_MCP_URL;
const token = readFileSync(process.env.WAGGLE_TOKEN_FILE, 'utf8').trim();
const runtime = process.env.WAGGLE_TEST_RUNTIME || 'python';
let session;
let nextId = 1;

const step = (msg) => process.stdout.write(`${new Date().toISOString()} ${msg}\n`);

/** One JSON-RPC message over Streamable HTTP; answers come as JSON or as an SSE stream. */
async function rpc(method, params, notification = false) {
  const body = { jsonrpc: '2.0', method, ...(params ? { params } : {}) };
  if (!notification) body.id = nextId++;
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-06-18',
      ...(session ? { 'mcp-session-id': session } : {}),
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(300_000),
  });
  session ??= res.headers.get('mcp-session-id') ?? undefined;
  const text = await res.text();
  if (!res.ok) throw new Error(`${method}: HTTP ${res.status}: ${text.slice(0, 500)}`);
  if (notification) return undefined;
  const messages = (res.headers.get('content-type') ?? '').includes('text/event-stream')
    ? text
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => JSON.parse(l.slice(5)))
    : [JSON.parse(text)];
  const answer = messages.find((m) => m.id === body.id);
  if (!answer) throw new Error(`${method}: no answer in ${text.slice(0, 500)}`);
  if (answer.error) throw new Error(`${method}: ${answer.error.code} ${answer.error.message}`);
  return answer.result;
}

async function tool(name, args) {
  const result = await rpc('tools/call', { name, arguments: args });
  const text = (result.content ?? []).map((c) => c.text ?? '').join('\n');
  if (result.isError) throw new Error(`${name} answered isError: ${text}`);
  return result.structuredContent ?? JSON.parse(text);
}

let envId;
try {
  step(`initialize ${url}`);
  const init = await rpc('initialize', {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'waggle-helm-test', version: '1' },
  });
  step(`server ${init.serverInfo?.name} ${init.serverInfo?.version}, session ${session ? 'open' : 'none'}`);
  await rpc('notifications/initialized', undefined, true);

  const tools = (await rpc('tools/list', {})).tools.map((t) => t.name);
  for (const t of ['create_environment', 'execute', 'destroy_environment']) {
    if (!tools.includes(t)) throw new Error(`tools/list lacks ${t}: ${tools.join(', ')}`);
  }
  step(`create_environment runtime=${runtime}`);
  const t0 = Date.now();
  envId = (await tool('create_environment', { runtime, timeout_minutes: 5 })).environment_id;
  step(`environment ${envId} running after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const code =
    runtime === 'python' ? 'print(6 * 7)' : runtime === 'node' ? 'console.log(6 * 7)' : 'echo $((6 * 7))';
  const out = await tool('execute', { environment_id: envId, code });
  if (out.exit_code !== 0 || String(out.stdout).trim() !== '42') {
    throw new Error(`execute: expected exit 0 and "42", got ${JSON.stringify(out)}`);
  }
  step('execute printed 42');
} catch (err) {
  step(`FAILED: ${err.message}`);
  process.exitCode = 1;
} finally {
  if (envId) {
    await tool('destroy_environment', { environment_id: envId }).then(
      () => step(`environment ${envId} destroyed`),
      (err) => {
        step(`FAILED to destroy ${envId}: ${err.message}`);
        process.exitCode = 1;
      },
    );
  }
}
if (!process.exitCode) step('ok');
