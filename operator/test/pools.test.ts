// Warm pools against a real apiserver (the WagglePool CRD, its scale subresource and printer
// columns) with fake node-agents: what the operator tells the nodes, the pool's status, and an
// environment created from a warm VM.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { WaggleEnvironment, WagglePool } from '@waggle/crds';
import { type FakeNodeAgent, startFakeNodeAgent } from '@waggle/node-agent/testing';
import {
  applyCRDs,
  deleteTestNamespace,
  ensureKubeBinaries,
  kubeClients,
  registerFakeNode,
  waitFor,
} from '@waggle/test';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type RunningOperator, startOperator } from '../src/operator.ts';
import { templateHash } from '../src/pool/template.ts';

const run = promisify(execFile);
const kubeconfigPath = inject('kubeconfigPath');
const { kc, custom, core } = kubeClients(kubeconfigPath);
const namespace = `pools-${process.pid}`;
const POOLS = { group: 'waggle.dev', version: 'v1alpha1', namespace, plural: 'wagglepools' };
const ENVS = { group: 'waggle.dev', version: 'v1alpha1', namespace, plural: 'waggleenvironments' };
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

const agents: Record<'a' | 'b', FakeNodeAgent> = {} as never;
const nodes: Array<{ remove(): Promise<void> }> = [];
const nodeName = (n: 'a' | 'b') => `pool-node-${n}-${process.pid}`;
let operator: RunningOperator;
let kubectlPath = '';

const kubectl = async (...args: string[]) =>
  (
    await run(kubectlPath, ['-n', namespace, ...args], {
      env: { ...process.env, KUBECONFIG: kubeconfigPath },
    })
  ).stdout;
const getPool = (name: string) => custom.getNamespacedCustomObject({ ...POOLS, name }) as Promise<WagglePool>;
/** The replicas each node was last told for `pool` (0: told, without it; undefined: never told). */
const told = (pool: string) =>
  Object.fromEntries(
    (['a', 'b'] as const).map((n) => {
      const last = agents[n].warmPoolCalls.at(-1);
      return [n, last && (last.find((p) => p.name === `${namespace}/${pool}`)?.replicas ?? 0)];
    }),
  );

beforeAll(async () => {
  kubectlPath = (await ensureKubeBinaries(['kubectl'])).kubectl;
  await applyCRDs(kubeconfigPath);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  for (const n of ['a', 'b'] as const) {
    agents[n] = await startFakeNodeAgent({ createDelayMs: 300 });
    nodes.push(
      await registerFakeNode(custom, {
        name: nodeName(n),
        endpoint: agents[n].url,
        vms: 10,
        pools: () => agents[n].poolStatus(),
      }),
    );
  }
  operator = await startPoolsOperator();
}, 60_000);

const startPoolsOperator = () =>
  startOperator({
    kc,
    log,
    identity: 'pools-test',
    namespace,
    config: {
      workers: 2,
      resyncMs: 30_000,
      nodeCheckEveryMs: 500,
      nodeStaleAfterMs: 10_000,
      unschedulableRetryMs: 1_000,
      destroyTimeoutMs: 3_000,
      verifyEveryMs: 2_000,
      pools: { driftGraceMs: 3_000 },
    },
  });

afterAll(async () => {
  for (const n of nodes) await n.remove();
  await operator?.stop();
  for (const a of Object.values(agents)) await a?.stop();
  await deleteTestNamespace(kc, namespace);
});

describe('WagglePool (real apiserver, fake node-agents)', () => {
  it('spreads the replicas over the nodes, reports them ready, and shows them in kubectl get wpool', {
    timeout: 60_000,
  }, async () => {
    await custom.createNamespacedCustomObject({
      ...POOLS,
      body: {
        apiVersion: 'waggle.dev/v1alpha1',
        kind: 'WagglePool',
        metadata: { name: 'python-small' },
        spec: { template: { runtime: 'python' }, replicas: 3 }, // the rest defaulted like an environment's
      },
    });
    await waitFor(
      async () => told('python-small'),
      (t) => t.a === 2 && t.b === 1,
      'SetWarmPools 2 + 1',
    );
    const sent = agents.a.warmPoolCalls.at(-1)?.[0];
    expect(sent?.template).toMatchObject({ cpus: 1, memoryMib: 512, diskMib: 2048 });

    const pool = await waitFor(
      () => getPool('python-small'),
      (p) => p.status?.readyReplicas === 3,
      'readyReplicas 3',
    );
    expect(pool.status).toMatchObject({
      replicas: 3,
      bootingReplicas: 0,
      templateHash: templateHash(pool.spec.template),
      selector: 'waggle.dev/pool=python-small',
      nodes: [
        { name: nodeName('a'), replicas: 2, ready: 2, booting: 0 },
        { name: nodeName('b'), replicas: 1, ready: 1, booting: 0 },
      ],
    });
    expect(pool.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'True',
      reason: 'Filled',
    });

    // The CRD's printer columns, as kubectl renders them.
    const table = (await kubectl('get', 'wpool', 'python-small')).trim().split('\n');
    expect(table[0]?.split(/\s+/)).toEqual(['NAME', 'RUNTIME', 'DESIRED', 'READY', 'BOOTING', 'AGE']);
    expect(table[1]).toMatch(/^python-small\s+python\s+3\s+3\s+0\s+\d+s$/);
  });

  it('scales through the scale subresource (kubectl scale, and a PUT as an HPA does)', {
    timeout: 60_000,
  }, async () => {
    await kubectl('scale', 'wpool/python-small', '--replicas=4');
    await waitFor(
      async () => told('python-small'),
      (t) => t.a === 2 && t.b === 2,
      'SetWarmPools 2 + 2',
    );

    const scale = (await custom.getNamespacedCustomObjectScale({ ...POOLS, name: 'python-small' })) as {
      spec: { replicas: number };
      status: { replicas: number; selector: string };
    };
    expect(scale.spec.replicas).toBe(4);
    expect(scale.status.selector).toBe('waggle.dev/pool=python-small');
    await custom.replaceNamespacedCustomObjectScale({
      ...POOLS,
      name: 'python-small',
      body: { ...scale, spec: { replicas: 1 } },
    });
    await waitFor(
      async () => told('python-small'),
      (t) => t.a === 1 && t.b === 0,
      'SetWarmPools 1 + 0',
    );
    await waitFor(
      () => getPool('python-small'),
      (p) => p.status?.readyReplicas === 1,
      'readyReplicas 1',
    );
  });

  it('creates a matching environment from a warm VM: CreateVM names the pool, createdFrom warm', {
    timeout: 60_000,
  }, async () => {
    await custom.createNamespacedCustomObject({
      ...ENVS,
      body: {
        apiVersion: 'waggle.dev/v1alpha1',
        kind: 'WaggleEnvironment',
        metadata: { name: 'warm' },
        spec: { runtime: 'python' }, // equals the pool's template once defaulted
      },
    });
    const env = await waitFor(
      () => custom.getNamespacedCustomObject({ ...ENVS, name: 'warm' }) as Promise<WaggleEnvironment>,
      (e) => e.status?.phase === 'Running',
      'the environment Running',
    );
    // The only warm VM is on node a (replicas 1): the environment goes there.
    expect(env.status).toMatchObject({
      nodeName: nodeName('a'),
      pool: `${namespace}/python-small`,
      createdFrom: 'warm',
    });
    expect(agents.a.createRequests).toContainEqual({
      vmId: env.metadata.uid,
      pool: `${namespace}/python-small`,
      image: '',
      imagePullConfig: '',
    });

    // One that does not match boots cold, without a pool.
    await custom.createNamespacedCustomObject({
      ...ENVS,
      body: {
        apiVersion: 'waggle.dev/v1alpha1',
        kind: 'WaggleEnvironment',
        metadata: { name: 'cold' },
        spec: { runtime: 'python', resources: { cpus: 2, memoryMiB: 1024 } },
      },
    });
    const cold = await waitFor(
      () => custom.getNamespacedCustomObject({ ...ENVS, name: 'cold' }) as Promise<WaggleEnvironment>,
      (e) => e.status?.phase === 'Running',
      'the cold environment Running',
    );
    expect(cold.status?.createdFrom).toBe('cold');
    expect(cold.status?.pool).toBeUndefined();
  });

  it('a template change gives a new templateHash and tells the nodes the new template', {
    timeout: 60_000,
  }, async () => {
    const before = (await getPool('python-small')).status?.templateHash;
    await custom.patchNamespacedCustomObject({
      ...POOLS,
      name: 'python-small',
      body: [{ op: 'replace', path: '/spec/template/resources/memoryMiB', value: 1024 }],
    });
    const after = await waitFor(
      () => getPool('python-small'),
      (p) => p.status?.templateHash !== undefined && p.status.templateHash !== before,
      'a new templateHash',
    );
    expect(after.status?.templateHash).toBe(templateHash(after.spec.template));
    await waitFor(
      async () => agents.a.warmPoolCalls.at(-1)?.[0]?.template?.memoryMib,
      (m) => m === 1024,
      'SetWarmPools with the new template',
    );
  });

  it("refuses bad pools with the field named (the environment's rules, the replica bound)", async () => {
    const refusal = async (spec: Record<string, unknown>) => {
      try {
        await custom.createNamespacedCustomObject({
          ...POOLS,
          body: { apiVersion: 'waggle.dev/v1alpha1', kind: 'WagglePool', metadata: { name: 'bad' }, spec },
        });
      } catch (err) {
        return String((err as { body?: unknown }).body);
      }
      throw new Error('the apiserver accepted a bad pool');
    };
    expect(await refusal({ template: { runtime: 'python' }, replicas: 1001 })).toMatch(/spec\.replicas/);
    expect(
      await refusal({ template: { runtime: 'python', resources: { cpus: 4, memoryMiB: 256 } } }),
    ).toMatch(/spec\.template\.resources\.memoryMiB.*at least 128 per cpu/);
    expect(await refusal({ template: { runtime: 'ruby' } })).toMatch(/spec\.template\.runtime/);
    expect(
      await refusal({
        template: { runtime: 'python', network: { egress: 'none', allowDomains: ['pypi.org'] } },
      }),
    ).toMatch(/allowDomains needs egress \\"all\\"/);
  });

  it('tells the nodes to drain when the pool is deleted', { timeout: 60_000 }, async () => {
    await custom.deleteNamespacedCustomObject({ ...POOLS, name: 'python-small' });
    await waitFor(
      async () => [agents.a.warmPoolCalls.at(-1), agents.b.warmPoolCalls.at(-1)],
      ([a, b]) => a?.length === 0 && b?.length === 0,
      'an empty SetWarmPools on both nodes',
    );
  });
});

describe('an operator started before the WagglePool CRD is applied (an upgrade that skipped it)', () => {
  it('runs environments cold, and starts warm pools once the CRD appears', { timeout: 90_000 }, async () => {
    await operator.stop();
    await kubectl('delete', 'crd', 'wagglepools.waggle.dev', '--wait=true');
    try {
      operator = await startPoolsOperator(); // must not wait for the missing CRD
      await custom.createNamespacedCustomObject({
        ...ENVS,
        body: {
          apiVersion: 'waggle.dev/v1alpha1',
          kind: 'WaggleEnvironment',
          metadata: { name: 'no-crd' },
          spec: { runtime: 'python' },
        },
      });
      const env = await waitFor(
        () => custom.getNamespacedCustomObject({ ...ENVS, name: 'no-crd' }) as Promise<WaggleEnvironment>,
        (e) => e.status?.phase === 'Running',
        'the environment Running without the pool CRD',
      );
      expect(env.status?.createdFrom).toBe('cold');
    } finally {
      await applyCRDs(kubeconfigPath);
    }
    await custom.createNamespacedCustomObject({
      ...POOLS,
      body: {
        apiVersion: 'waggle.dev/v1alpha1',
        kind: 'WagglePool',
        metadata: { name: 'late' },
        spec: { template: { runtime: 'shell' }, replicas: 1 },
      },
    });
    await waitFor(
      () => getPool('late'),
      (p) => p.status?.readyReplicas === 1,
      'the late pool filled',
      { timeoutMs: 60_000 },
    );
  });
});
