// Tenancy: namespaces cannot see or touch each other's environments or sessions, and each caller
// has its own environment limit.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { call, connectClient, errorText, ok } from '@waggle/test';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway.ts';
import { envObject, nsA, useGatewayStack } from './fixture.ts';

const stack = useGatewayStack();
let gateway: RunningGateway;
let a: Client;
let b: Client;
let keyB: string;
let keyC: string;
beforeAll(() => {
  ({ gateway, a, b, keyB, keyC } = stack);
});

describe('mcp-gateway tenancy (real apiserver and operator, fake node-agent)', () => {
  it('isolates tenants: another namespace cannot see or touch an environment', {
    timeout: 60_000,
  }, async () => {
    const { environment_id: id } = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'node',
    });
    await ok(a, 'write_file', { environment_id: id, path: 'secret.txt', content: 'A only' });
    const listedByB = await ok<{ count: number; environments: Array<{ environment_id: string }> }>(
      b,
      'list_environments',
      {},
    );
    expect(listedByB.environments.map((e) => e.environment_id)).not.toContain(id);
    const attempts: Array<[string, Record<string, unknown>]> = [
      ['execute', { environment_id: id, code: 'ls' }],
      ['read_file', { environment_id: id, path: 'secret.txt' }],
      ['write_file', { environment_id: id, path: 'x', content: 'y' }],
      ['list_files', { environment_id: id }],
      ['install_packages', { environment_id: id, packages: ['lodash'] }],
      ['destroy_environment', { environment_id: id }],
    ];
    for (const [tool, args] of attempts) {
      const r = await call(b, tool, args);
      expect(r.isError, tool).toBe(true);
      expect(errorText(r), tool).toMatch(new RegExp(`environment "${id}" does not exist`));
    }
    expect((await envObject(nsA, id)).metadata.deletionTimestamp).toBeUndefined();
    // A session belongs to its caller: B's token with A's session id is "not found".
    const sessionId = (a.transport as { sessionId?: string }).sessionId as string;
    const hijack = await fetch(gateway.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${keyB}`,
        'mcp-session-id': sessionId,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(hijack.status).toBe(404);
    await ok(a, 'destroy_environment', { environment_id: id });
  });

  it('enforces the per-caller limit and counts callers separately', { timeout: 60_000 }, async () => {
    // Four creates at once: the watch cache lags the creates, and still only three may pass.
    const results = await Promise.all(
      [0, 1, 2, 3].map(() => call(a, 'create_environment', { runtime: 'python' })),
    );
    const ids = results
      .filter((r) => !r.isError)
      .map((r) => (r.structuredContent as { environment_id: string }).environment_id);
    expect(ids).toHaveLength(3);
    const fourth = results.find((r) => r.isError);
    expect(fourth?.isError).toBe(true);
    expect(errorText(fourth as Awaited<ReturnType<typeof call>>)).toMatch(/already have 3 environments/);
    const extra = await call(a, 'create_environment', { runtime: 'python' });
    expect(extra.isError).toBe(true);
    expect(errorText(extra)).toMatch(/already have 3 environments/);
    // Another caller in the same namespace has its own allowance, and sees the namespace's environments.
    const c = await connectClient(gateway.url, keyC, 'agent-c');
    try {
      const mine = await ok<{ environment_id: string }>(c, 'create_environment', { runtime: 'python' });
      ids.push(mine.environment_id);
    } finally {
      await c.close();
    }
    for (const id of ids) await ok(a, 'destroy_environment', { environment_id: id });
  });
});
