// A gateway that shuts down (rollout, deleted pod) answers every running tool call: calls that
// finish within the grace get their result, the rest an isError saying they were interrupted.
// Without this, an MCP client whose response stream just closes waits for the answer until its
// own timeout (minutes; seen on the real node in test/e2e/faults.test.ts).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { type FakeNodeAgent, startFakeNodeAgent } from '@waggle/node-agent/testing';
import {
  applyCRDs,
  type ComponentProcess,
  deleteTestNamespace,
  freePorts,
  registerFakeNode,
  startOperatorProcess,
  waitFor,
} from '@waggle/test';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadGatewayConfig } from '../src/config.ts';
import { type RunningGateway, startGateway } from '../src/gateway.ts';
import { call, connectClient, errorText, ok } from './mcp-client.ts';

const kubeconfigPath = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const suffix = randomBytes(3).toString('hex');
const ns = `gw-stop-${suffix}`;
const KEY = `key-${randomBytes(16).toString('hex')}`;

let agent: FakeNodeAgent;
let node: Awaited<ReturnType<typeof registerFakeNode>>;
let operator: ComponentProcess;
let gateway: RunningGateway | undefined;
let dir: string;
let client: Client;

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
  agent = await startFakeNodeAgent({ createDelayMs: 50 });
  node = await registerFakeNode(kc.makeApiClient(CustomObjectsApi), {
    name: `gw-stop-node-${suffix}`,
    endpoint: agent.url,
    vms: 5,
  });
  const [opsPort] = (await freePorts(1)) as [number];
  operator = await startOperatorProcess({ kubeconfigPath, opsPort, env: { WAGGLE_WATCH_NAMESPACE: ns } });
  dir = await mkdtemp(join(tmpdir(), 'waggle-gw-stop-'));
  const keysFile = join(dir, 'keys.yaml');
  await writeFile(keysFile, `keys:\n  - {name: agent, namespace: ${ns}, key: ${KEY}}\n`);
  gateway = await startGateway({
    config: loadGatewayConfig({
      WAGGLE_LISTEN_ADDR: '127.0.0.1:0',
      WAGGLE_API_KEYS_FILE: keysFile,
      WAGGLE_CREATE_TIMEOUT: '30s',
      WAGGLE_SHUTDOWN_GRACE: '2s',
    }),
    kc,
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  });
  client = await connectClient(gateway.url, KEY, 'agent');
}, 120_000);

afterAll(async () => {
  await client?.close().catch(() => undefined);
  await gateway?.close();
  await deleteTestNamespace(kc, ns);
  await operator?.kill('SIGTERM');
  await node?.remove();
  await agent?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
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
    const url = gateway?.url as string;
    const t0 = Date.now();
    const closing = gateway?.close();
    gateway = undefined;
    // While it drains, nobody gets a new session.
    await new Promise((r) => setTimeout(r, 100));
    await expect(connectClient(url, KEY, 'late')).rejects.toThrow(/restarting|503/);

    const shortResult = await short;
    expect(shortResult.isError, errorText(shortResult)).toBeFalsy();
    expect(shortResult.structuredContent).toMatchObject({ stdout: 'sleep:800' });
    const longResult = await long;
    expect(longResult.isError).toBe(true);
    expect(errorText(longResult)).toMatch(/gateway restarted while this call ran/);
    expect(Date.now() - t0).toBeLessThan(10_000);
    // The node-agent was told to stop the interrupted command.
    await waitFor(
      async () => agent.cancelledExecs.length,
      (n) => n === 1,
      'the node-agent to see the interrupted exec cancelled',
      { timeoutMs: 5_000, intervalMs: 50 },
    );
    await closing;
  });
});
