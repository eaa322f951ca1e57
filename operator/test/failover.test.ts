import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { WaggleEnvironment } from '@waggle/crds';
import { type FakeNodeAgent, startFakeNodeAgent } from '@waggle/node-agent/testing';
import {
  applyCRDs,
  deleteTestNamespace,
  freePorts,
  kubeClients,
  registerFakeNode,
  waitFor,
} from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const MAIN = join(import.meta.dirname, '..', 'src', 'main.ts');
const kubeconfigPath = inject('kubeconfigPath');
const { kc, custom, core } = kubeClients(kubeconfigPath);
const G = { group: 'waggle.dev', version: 'v1alpha1' };
const namespace = `failover-${process.pid}`;
const nodeName = `fake-failover-${process.pid}`;

let agent: FakeNodeAgent;
let fakeNode: Awaited<ReturnType<typeof registerFakeNode>> | undefined;
const replicas: Array<{ name: string; opsPort: number; proc: ChildProcess }> = [];

async function startReplica(name: string, opsPort: number) {
  const proc = spawn(process.execPath, [MAIN], {
    env: {
      ...process.env,
      KUBECONFIG: kubeconfigPath,
      POD_NAME: name,
      POD_NAMESPACE: namespace,
      WAGGLE_WATCH_NAMESPACE: namespace,
      WAGGLE_OPERATOR_OPS_LISTEN: `127.0.0.1:${opsPort}`,
      WAGGLE_LEASE_NAME: 'waggle-operator-test',
      WAGGLE_LEASE_DURATION: '5s',
      WAGGLE_RENEW_DEADLINE: '4s',
      WAGGLE_RETRY_PERIOD: '500ms',
      WAGGLE_UNSCHEDULABLE_RETRY: '1s',
      WAGGLE_VERIFY_INTERVAL: '2s',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  replicas.push({ name, opsPort, proc });
}

const isLeader = async (opsPort: number) =>
  fetch(`http://127.0.0.1:${opsPort}/metrics`)
    .then((r) => r.text())
    .then((t) => /^leader_election_master_status\{name="waggle-operator-test"\} 1$/m.test(t))
    .catch(() => false);

const envs = async () =>
  (
    (await custom.listNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments' })) as {
      items: WaggleEnvironment[];
    }
  ).items;

async function until(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return Date.now() - t0;
}

const createEnvs = (names: string[]) =>
  Promise.all(
    names.map((name) =>
      custom.createNamespacedCustomObject({
        ...G,
        namespace,
        plural: 'waggleenvironments',
        body: {
          apiVersion: 'waggle.dev/v1alpha1',
          kind: 'WaggleEnvironment',
          metadata: { name },
          spec: { runtime: 'python' },
        },
      }),
    ),
  );

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  agent = await startFakeNodeAgent({ createDelayMs: 200 });
  fakeNode = await registerFakeNode(custom, {
    name: nodeName,
    endpoint: agent.url,
    vms: 50,
    runtimes: ['python'],
  });
  const [a, b] = (await freePorts(2)) as [number, number];
  await startReplica('op-a', a);
  await startReplica('op-b', b);
}, 60_000);

afterAll(async () => {
  for (const r of replicas) r.proc.kill('SIGKILL');
  await fakeNode?.remove();
  await agent?.stop();
  await deleteTestNamespace(kc, namespace);
});

describe('two operator replicas (real processes, leader election on a Lease)', () => {
  it('one reconciles; after SIGKILL of the leader the other takes over and nothing is lost or duplicated', {
    timeout: 90_000,
  }, async () => {
    await until(
      async () => (await Promise.all(replicas.map((r) => isLeader(r.opsPort)))).filter(Boolean).length === 1,
      'one leader',
      20_000,
    );
    const flags = await Promise.all(replicas.map((r) => isLeader(r.opsPort)));
    expect(flags.filter(Boolean)).toHaveLength(1); // exactly one
    const leader = replicas[flags.indexOf(true)] as (typeof replicas)[number];
    const follower = replicas[flags.indexOf(false)] as (typeof replicas)[number];

    await createEnvs(['f-1', 'f-2', 'f-3', 'f-4', 'f-5', 'f-6']);
    await until(
      async () => (await envs()).filter((e) => e.status?.phase === 'Running').length === 6,
      '6 Running',
      30_000,
    );

    leader.proc.kill('SIGKILL');
    await createEnvs(['f-7', 'f-8', 'f-9', 'f-10']);
    const tookOver = await until(() => isLeader(follower.opsPort), `${follower.name} to lead`, 30_000);
    expect(tookOver).toBeLessThan(5_000 + 3_000); // within the lease duration (+ a few retry periods)
    await waitFor(
      envs,
      (items) => items.filter((e) => e.status?.phase === 'Running').length === 10,
      '10 Running after failover',
      {
        timeoutMs: 30_000,
        describe: (items) =>
          items.map(
            (e) =>
              `${e.metadata.name}:${e.status?.phase}:${e.status?.message ?? ''}:${(e.metadata.finalizers ?? []).length}`,
          ),
      },
    );

    const items = await envs();
    expect(items).toHaveLength(10);
    expect(new Set(items.map((e) => e.status?.vmId)).size).toBe(10);
    expect(agent.vms.size).toBe(10); // CreateVM retries are idempotent per environment UID
  });
});
