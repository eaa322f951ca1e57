// A gateway that shuts down (rollout, deleted pod) answers every running tool call: calls that
// finish within the grace get their result, the rest an isError saying they were interrupted.
// Without this, an MCP client whose response stream just closes waits for the answer until its
// own timeout (minutes; seen on the real node in test/e2e/faults.test.ts).
import { randomBytes } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { call, connectClient, errorText, loadKubeConfig, ok, waitFor } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type FakeStack, startFakeStack } from './fake-stack.ts';

const kubeconfigPath = inject('kubeconfigPath');
const kc = loadKubeConfig(kubeconfigPath);
const ns = `gw-stop-${randomBytes(3).toString('hex')}`;

let stack: FakeStack;
let client: Client;

beforeAll(async () => {
  stack = await startFakeStack({
    kc,
    kubeconfigPath,
    name: 'gw-stop',
    namespaces: [ns],
    callers: [{ name: 'agent', namespace: ns }],
    node: { vms: 5 },
    gatewayEnv: { WAGGLE_SHUTDOWN_GRACE: '2s' },
  });
  client = await connectClient(stack.gateway?.url as string, stack.keys.agent as string, 'agent');
}, 120_000);

afterAll(async () => {
  await client?.close().catch(() => undefined);
  await stack?.close();
});

describe('gateway shutdown', () => {
  it('answers every running call: short ones finish, long ones are told they were interrupted; no new sessions', {
    timeout: 60_000,
  }, async () => {
    const { environment_id } = await ok<{ environment_id: string }>(client, 'create_environment', {
      runtime: 'python',
    });
    // The fake node-agent's exec waits `sleep:<ms>` (or until cancelled), then echoes the code.
    const short = call(client, 'execute', { environment_id, code: 'sleep:800', timeout: 60 });
    const long = call(client, 'execute', { environment_id, code: 'sleep:50000', timeout: 120 });
    await new Promise((r) => setTimeout(r, 300));
    const url = stack.gateway?.url as string;
    const t0 = Date.now();
    const closing = stack.gateway?.close();
    stack.gateway = undefined;
    // While it drains, nobody gets a new session.
    await new Promise((r) => setTimeout(r, 100));
    await expect(connectClient(url, stack.keys.agent as string, 'late')).rejects.toThrow(/restarting|503/);

    const shortResult = await short;
    expect(shortResult.isError, errorText(shortResult)).toBeFalsy();
    expect(shortResult.structuredContent).toMatchObject({ stdout: 'sleep:800' });
    const longResult = await long;
    expect(longResult.isError).toBe(true);
    expect(errorText(longResult)).toMatch(/gateway restarted while this call ran/);
    expect(Date.now() - t0).toBeLessThan(10_000);
    // The node-agent was told to stop the interrupted command.
    await waitFor(
      async () => stack.agent.cancelledExecs.length,
      (n) => n === 1,
      'the node-agent to see the interrupted exec cancelled',
      { timeoutMs: 5_000, intervalMs: 50 },
    );
    await closing;
  });
});
