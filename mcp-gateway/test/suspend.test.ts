// Suspend on idle with transparent resume (ADR 0014) through the real apiserver, a real operator
// process, the gateway and a fake node-agent: an idle environment with idleAction Suspend is
// suspended (SuspendVM), a tool call on it resumes it (ResumeVM) and reports resumed_in_ms, and
// its maximum lifetime still deletes it while suspended. Real VMs: node-agent/test (see README).
import { randomBytes } from 'node:crypto';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { WaggleEnvironment, WaggleEnvironmentSpec } from '@waggle/crds';
import type { FakeNodeAgent } from '@waggle/node-agent/testing';
import { call, connectClient, ENVIRONMENTS, errorText, kubeClients, ok, waitFor } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type FakeStack, startFakeStack } from './fake-stack.ts';

const kubeconfigPath = inject('kubeconfigPath');
const { kc, custom } = kubeClients(kubeconfigPath);
const ns = `suspend-${randomBytes(3).toString('hex')}`;

let stack: FakeStack;
let agent: FakeNodeAgent;
let client: Client;

beforeAll(async () => {
  stack = await startFakeStack({
    kc,
    kubeconfigPath,
    name: 'suspend',
    namespaces: [ns],
    callers: [{ name: 'agent', namespace: ns }],
    gatewayEnv: { WAGGLE_IDLE_ACTION: 'suspend', WAGGLE_RESUME_WAIT_TIMEOUT: '20s' },
  });
  agent = stack.agent;
  client = await connectClient(stack.gateway?.url as string, stack.keys.agent as string, 'agent');
}, 120_000);

afterAll(async () => {
  await client?.close();
  await stack?.close();
});

const envObject = (name: string) =>
  custom.getNamespacedCustomObject({ ...ENVIRONMENTS, namespace: ns, name }) as Promise<WaggleEnvironment>;

const patchSpec = (name: string, spec: Partial<WaggleEnvironmentSpec>) =>
  custom.patchNamespacedCustomObject(
    { ...ENVIRONMENTS, namespace: ns, name, body: { spec } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );

const phaseOf = (name: string, phase: string) =>
  waitFor(
    () => envObject(name).catch(() => undefined),
    (e) => e?.status?.phase === phase,
    `environment ${name} to be ${phase}`,
    { timeoutMs: 30_000, describe: (e) => e?.status },
  ) as Promise<WaggleEnvironment>;

/** A new environment (the gateway's default idle action: suspend) idle after one second. */
async function suspendedEnvironment(): Promise<{ id: string; uid: string }> {
  const created = await ok<{ environment_id: string; idle_action: string }>(client, 'create_environment', {
    runtime: 'python',
  });
  expect(created.idle_action).toBe('suspend');
  const id = created.environment_id;
  await patchSpec(id, { idleTimeout: '1s' });
  const env = await phaseOf(id, 'Suspended');
  const uid = env.metadata.uid as string;
  expect(agent.suspendCalls).toContain(uid);
  expect(agent.suspended.has(uid)).toBe(true);
  expect(env.status?.suspendedAt).toBeDefined();
  expect(env.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
    status: 'False',
    reason: 'Suspended',
  });
  return { id, uid };
}

describe('suspend on idle (fake node-agent, real operator and apiserver)', () => {
  it('suspends an idle environment; execute resumes it and reports resumed_in_ms', {
    timeout: 90_000,
  }, async () => {
    const { id, uid } = await suspendedEnvironment();
    const listed = await ok<{ environments: Array<{ environment_id: string; status: string }> }>(
      client,
      'list_environments',
      {},
    );
    expect(listed.environments.find((e) => e.environment_id === id)?.status).toBe('suspended');
    // Long enough that the operator does not suspend it again before the call runs.
    await patchSpec(id, { idleTimeout: '10m' });

    const r = await call(client, 'execute', { environment_id: id, code: 'print(1)' });
    expect(r.isError, errorText(r)).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ stdout: 'print(1)', exit_code: 0 });
    expect(r.structuredContent?.resumed_in_ms).toEqual(expect.any(Number));
    expect(errorText(r)).toMatch(
      new RegExp(`environment "${id}" was suspended \\(idle\\); it resumed in \\d+ ms`),
    );
    expect(agent.resumeCalls).toEqual([uid]);
    const env = await envObject(id);
    expect(env.status).toMatchObject({ phase: 'Running', lastResumeMs: 1 });
    expect(env.status?.resumedAt).toBeDefined();

    // Running again: the next call does not wait or say anything about a resume.
    const again = await call(client, 'execute', { environment_id: id, code: 'print(2)' });
    expect(again.structuredContent).not.toHaveProperty('resumed_in_ms');
    expect(agent.resumeCalls).toEqual([uid]);
  });

  it('a suspended VM that is gone fails the call with a clear error (isError)', {
    timeout: 60_000,
  }, async () => {
    const { id, uid } = await suspendedEnvironment();
    agent.vms.delete(uid); // the node lost it
    const r = await call(client, 'read_file', { environment_id: id, path: 'x.txt' });
    expect(r.isError).toBe(true);
    expect(errorText(r)).toMatch(new RegExp(`environment "${id}" is Failed.*the suspended VM is gone from`));
  });

  it('deletes a suspended environment at its maximum lifetime, destroying its VM', {
    timeout: 60_000,
  }, async () => {
    const { id, uid } = await suspendedEnvironment();
    await patchSpec(id, { maxLifetime: '3s' });
    await waitFor(
      () =>
        envObject(id).then(
          () => true,
          () => false,
        ),
      (exists) => !exists,
      `environment ${id} to be deleted`,
      { timeoutMs: 30_000 },
    );
    expect(agent.destroyCalls).toContain(uid);
    expect(agent.resumeCalls).not.toContain(uid);
  });
});
