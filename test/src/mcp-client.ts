import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

// An MCP test client: the SDK's own Client over Streamable HTTP, as an agent would connect, and
// helpers to call tools.

/** The SDK's own Client over Streamable HTTP with a bearer token, as an agent would connect. */
export async function connectClient(
  url: string,
  token: string | undefined,
  name = 'waggle-test',
): Promise<Client> {
  const client = new Client({ name, version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: token ? { Authorization: `Bearer ${token}` } : {} },
  });
  await client.connect(transport);
  return client;
}

/**
 * Ends the session on the server too (DELETE /mcp), as a well-behaved client does, then closes
 * the client: sessions count against the caller's limit until they end or idle out.
 */
export async function endSession(client: Client): Promise<void> {
  const transport = client.transport;
  if (transport instanceof StreamableHTTPClientTransport)
    await transport.terminateSession().catch(() => undefined);
  await client.close();
}

export type ToolResult = CallToolResult & { structuredContent?: Record<string, unknown> };

/** Calls a tool; returns the result (isError results included — they are answers, not faults). */
export async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  opts: Parameters<Client['callTool']>[2] = {},
): Promise<ToolResult> {
  return (await client.callTool({ name, arguments: args }, undefined, {
    timeout: 300_000,
    ...opts,
  })) as ToolResult;
}

/** Calls a tool that must succeed; returns its structured content. */
export async function ok<T = Record<string, unknown>>(
  client: Client,
  name: string,
  args: Record<string, unknown>,
): Promise<T> {
  const r = await call(client, name, args);
  if (r.isError) throw new Error(`${name} failed: ${JSON.stringify(r.content)}`);
  return r.structuredContent as T;
}

export const errorText = (r: ToolResult): string =>
  r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

/** The JSON-RPC body of an MCP `initialize`, for tests that speak raw HTTP to the gateway's edge. */
export function initializeBody(clientName = 'raw'): string {
  return JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: {
      protocolVersion: '2025-11-25',
      capabilities: {},
      clientInfo: { name: clientName, version: '1' },
    },
  });
}

/** POSTs a raw MCP `initialize` to `url` with extra headers (a token, an Origin, …). */
export function postInitialize(url: string, headers: Record<string, string> = {}, clientName = 'raw') {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body: initializeBody(clientName),
  });
}
