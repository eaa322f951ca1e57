import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LAST_ACTIVITY_ANNOTATION, type WaggleEnvironment } from '@waggle/crds';
import { Code } from '@waggle/node-agent/client';
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

const run = promisify(execFile);
const kubeconfigPath = inject('kubeconfigPath');
const { kc, custom, core } = kubeClients(kubeconfigPath);
const G = { group: 'waggle.dev', version: 'v1alpha1' };
const namespace = `operator-${process.pid}`;
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

let agent: FakeNodeAgent;
let operator: RunningOperator;
const nodesToStop = new Map<
  string,
  { stopHeartbeat(): void; resumeHeartbeat(): void; remove(): Promise<void> }
>();

async function registerNode(
  name: string,
  endpoint: string,
  vms: number,
  clockSkewMs?: number,
): Promise<void> {
  const node = await registerFakeNode(custom, {
    name,
    endpoint,
    vms,
    ...(clockSkewMs ? { clockSkewMs } : {}),
  });
  nodesToStop.set(name, node);
}

const envs = async () =>
  (
    (await custom.listNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments' })) as {
      items: WaggleEnvironment[];
    }
  ).items;

async function createEnv(
  name: string,
  spec: Record<string, unknown>,
  annotations: Record<string, string> = {},
) {
  await custom.createNamespacedCustomObject({
    ...G,
    namespace,
    plural: 'waggleenvironments',
    body: {
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleEnvironment',
      metadata: { name, annotations },
      spec,
    },
  });
}

/** Waits on the environment list; a timeout reports phase counts and distinct messages. */
const until = (
  probe: () => Promise<WaggleEnvironment[]>,
  ok: (v: WaggleEnvironment[]) => boolean,
  what: string,
  timeoutMs = 60_000,
) =>
  waitFor(probe, ok, what, {
    timeoutMs,
    intervalMs: 250,
    describe: (items) => ({
      counts: count(items),
      messages: [...new Set(items.map((e) => e.status?.message))],
    }),
  });

const count = (items: WaggleEnvironment[]) => {
  const c: Record<string, number> = {};
  for (const e of items) {
    const k = `${e.status?.phase ?? 'none'}${e.status?.phase === 'Pending' ? `/${e.status.conditions?.find((x) => x.type === 'Scheduled')?.reason}` : ''}`;
    c[k] = (c[k] ?? 0) + 1;
  }
  return c;
};

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  agent = await startFakeNodeAgent({ createDelayMs: 100 });
  await registerNode(`fake-a-${process.pid}`, agent.url, 20);
  operator = await startOperator({
    kc,
    log,
    identity: 'test-operator',
    namespace,
    config: {
      workers: 4,
      resyncMs: 30_000,
      nodeCheckEveryMs: 500,
      nodeStaleAfterMs: 10_000, // generous: heartbeats every 1 s can lag on a loaded 2-core machine
      nodeLostGraceMs: 8_000,
      agentCallTimeoutMs: 3_000,
      unschedulableRetryMs: 1_000,
      destroyTimeoutMs: 3_000,
      verifyEveryMs: 2_000,
    },
  });
}, 60_000);

afterAll(async () => {
  for (const n of nodesToStop.values()) await n.remove();
  await operator?.stop();
  await agent?.stop();
  await deleteTestNamespace(kc, namespace);
});

describe('WaggleEnvironment reconciler (real apiserver, fake node-agent)', () => {
  it('runs exactly 20 of 50 against capacity 20, then schedules pending ones as capacity frees', {
    timeout: 180_000,
  }, async () => {
    await Promise.all(Array.from({ length: 50 }, (_, i) => createEnv(`cap-${i}`, { runtime: 'python' })));
    const settled = await until(
      envs,
      (items) => {
        const c = count(items);
        return c.Running === 20 && c['Pending/Unschedulable'] === 30;
      },
      '20 Running and 30 Pending/Unschedulable',
    );
    const running = settled.filter((e) => e.status?.phase === 'Running');
    expect(new Set(running.map((e) => e.status?.vmId)).size).toBe(20);
    expect(new Set(agent.createCalls).size).toBe(20); // nothing was placed twice
    expect(agent.vms.size).toBe(20);
    const pending = settled.find((e) => e.status?.phase === 'Pending');
    expect(pending?.status?.message).toMatch(/^0\/1 nodes are available: 1 no free VM slot/);

    const victims = running.slice(0, 10).map((e) => e.metadata.name as string);
    await Promise.all(
      victims.map((name) =>
        custom.deleteNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments', name }),
      ),
    );
    const after = await until(
      envs,
      (items) => {
        const c = count(items);
        return items.length === 40 && c.Running === 20 && c['Pending/Unschedulable'] === 20;
      },
      '40 left, 20 Running again',
    );
    expect(after.every((e) => !victims.includes(e.metadata.name as string))).toBe(true);
    expect(agent.destroyCalls.length).toBeGreaterThanOrEqual(10);
    expect(agent.vms.size).toBe(20);

    const { kubectl } = await ensureKubeBinaries(['kubectl']);
    const { stdout } = await run(kubectl, ['get', 'wenv', '-n', namespace, '--no-headers'], {
      env: { ...process.env, KUBECONFIG: kubeconfigPath },
    });
    expect(stdout.split('\n').filter((l) => /\bRunning\b/.test(l) && /fake-a-/.test(l))).toHaveLength(20);
    const describe = await run(
      kubectl,
      [
        'describe',
        'wenv',
        '-n',
        namespace,
        after.find((e) => e.status?.phase === 'Running')?.metadata.name as string,
      ],
      {
        env: { ...process.env, KUBECONFIG: kubeconfigPath },
      },
    );
    expect(describe.stdout).toMatch(/Scheduled\s+.*Assigned to fake-a-/);

    await custom.deleteCollectionNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments' });
    await until(envs, (items) => items.length === 0, 'all environments deleted');
    expect(agent.vms.size).toBe(0);
  });

  it('deletes an idle environment at its idle timeout but keeps an active one', {
    timeout: 60_000,
  }, async () => {
    await createEnv('idle', { runtime: 'python', idleTimeout: '4s' });
    await createEnv('active', { runtime: 'python', idleTimeout: '4s' });
    const touch = setInterval(() => {
      void custom
        .getNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments', name: 'active' })
        .then((e) => {
          const obj = e as WaggleEnvironment;
          obj.metadata.annotations = { ...obj.metadata.annotations, [LAST_ACTIVITY_ANNOTATION]: now() };
          return custom.replaceNamespacedCustomObject({
            ...G,
            namespace,
            plural: 'waggleenvironments',
            name: 'active',
            body: obj,
          });
        })
        .catch(() => undefined);
    }, 1_000);
    try {
      const left = await until(
        envs,
        (items) => !items.some((e) => e.metadata.name === 'idle'),
        'idle to be deleted',
        30_000,
      );
      expect(left.map((e) => e.metadata.name)).toEqual(['active']);
      await new Promise((r) => setTimeout(r, 3_000));
      expect((await envs()).map((e) => e.metadata.name)).toEqual(['active']);
    } finally {
      clearInterval(touch);
      await custom
        .deleteNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments', name: 'active' })
        .catch(() => undefined);
    }
  });

  it('keeps the VM of a node that goes quiet (NodeReachable=False) and recovers when heartbeats return', {
    timeout: 60_000,
  }, async () => {
    // The agent's clock is an hour behind: judged by its timestamps this node would look dead.
    const nodeName = `fake-skew-${process.pid}`;
    const other = await startFakeNodeAgent();
    const condition = (e: WaggleEnvironment | undefined, type: string) =>
      e?.status?.conditions?.find((c) => c.type === type);
    try {
      await registerNode(nodeName, other.url, 5, -3_600_000);
      await createEnv('quiet', { runtime: 'python', nodeName });
      const running = await until(
        envs,
        (items) => items.find((e) => e.metadata.name === 'quiet')?.status?.phase === 'Running',
        'quiet to run on a node whose clock is an hour behind',
      );
      const uid = running.find((e) => e.metadata.name === 'quiet')?.metadata.uid as string;
      nodesToStop.get(nodeName)?.stopHeartbeat();
      const unreachable = await until(
        envs,
        (items) =>
          condition(
            items.find((e) => e.metadata.name === 'quiet'),
            'NodeReachable',
          )?.status === 'False',
        'NodeReachable=False',
        30_000,
      );
      const quiet = unreachable.find((e) => e.metadata.name === 'quiet');
      expect(quiet?.status?.phase).toBe('Running');
      expect(condition(quiet, 'Ready')).toMatchObject({ status: 'False', reason: 'NodeUnreachable' });
      expect(condition(quiet, 'NodeReachable')?.message).toMatch(/VM is kept/);
      expect(other.vms.has(uid)).toBe(true);
      nodesToStop.get(nodeName)?.resumeHeartbeat();
      const back = await until(
        envs,
        (items) =>
          condition(
            items.find((e) => e.metadata.name === 'quiet'),
            'NodeReachable',
          )?.status === 'True',
        'NodeReachable=True again',
        30_000,
      );
      const recovered = back.find((e) => e.metadata.name === 'quiet');
      expect(recovered?.status?.phase).toBe('Running');
      expect(condition(recovered, 'Ready')).toMatchObject({ status: 'True', reason: 'Running' });
      expect(other.vms.has(uid)).toBe(true);
      expect(other.destroyCalls).not.toContain(uid);
    } finally {
      await custom.deleteCollectionNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments' });
      await until(envs, (items) => items.length === 0, 'cleanup', 30_000);
      await nodesToStop.get(nodeName)?.remove();
      nodesToStop.delete(nodeName);
      await other.stop();
    }
  });

  it('marks a silent node not Ready and, after the node-lost grace, its environments NodeLost; new ones avoid it', {
    timeout: 60_000,
  }, async () => {
    const nodeName = `fake-b-${process.pid}`;
    const other = await startFakeNodeAgent();
    try {
      await registerNode(nodeName, other.url, 5);
      await createEnv('pinned', { runtime: 'python', nodeName });
      await until(
        envs,
        (items) => items.find((e) => e.metadata.name === 'pinned')?.status?.phase === 'Running',
        'pinned to run',
      );
      nodesToStop.get(nodeName)?.stopHeartbeat();
      const lost = await until(
        envs,
        (items) => items.find((e) => e.metadata.name === 'pinned')?.status?.phase === 'Failed',
        'NodeLost',
        40_000,
      );
      const ready = lost
        .find((e) => e.metadata.name === 'pinned')
        ?.status?.conditions?.find((c) => c.type === 'Ready');
      expect(ready?.reason).toBe('NodeLost');
      // The environment can fail (its reconcile sees the stale heartbeat) a moment before the
      // node lifecycle loop writes the node's condition: wait for that write too.
      type NodeStatus = { status: { conditions: Array<{ type: string; status: string; reason: string }> } };
      const node = await waitFor(
        () =>
          custom.getClusterCustomObject({
            ...G,
            plural: 'wagglenodes',
            name: nodeName,
          }) as Promise<NodeStatus>,
        (n) => n.status.conditions.some((c) => c.type === 'Ready' && c.status === 'False'),
        'node marked not Ready',
        { timeoutMs: 10_000, intervalMs: 200 },
      );
      expect(node.status.conditions.find((c) => c.type === 'Ready')).toMatchObject({
        status: 'False',
        reason: 'HeartbeatStale',
      });
      await createEnv('after-loss', { runtime: 'python', nodeName });
      const pending = await until(
        envs,
        (items) => {
          const e = items.find((x) => x.metadata.name === 'after-loss');
          // Pending from the start; wait for the scheduler's verdict.
          return (
            e?.status?.phase === 'Pending' &&
            e.status.conditions?.some((c) => c.type === 'Scheduled' && c.reason === 'Unschedulable') === true
          );
        },
        'pending (Unschedulable)',
      );
      expect(pending.find((e) => e.metadata.name === 'after-loss')?.status?.message).toMatch(
        /heartbeat is stale|not ready/,
      );
      // The node comes back with the lost VM still running: the environment stays Failed (its
      // state is gone for the agent that used it), and its VM is destroyed so it frees the slot.
      const pinnedUid = lost.find((e) => e.metadata.name === 'pinned')?.metadata.uid as string;
      expect(other.vms.has(pinnedUid)).toBe(true);
      nodesToStop.get(nodeName)?.resumeHeartbeat();
      await waitFor(
        async () => other.vms.has(pinnedUid),
        (present) => !present,
        'the failed environment’s VM destroyed once its node is back',
        { timeoutMs: 20_000, intervalMs: 200 },
      );
      expect((await envs()).find((e) => e.metadata.name === 'pinned')?.status?.phase).toBe('Failed');
    } finally {
      await custom.deleteCollectionNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments' });
      await until(envs, (items) => items.length === 0, 'cleanup', 30_000); // finalizer gives up on the lost node
      await other.stop();
    }
  });

  it('leaves environments in namespaces it does not watch alone', { timeout: 30_000 }, async () => {
    const elsewhere = `${namespace}-other`;
    await core.createNamespace({ body: { metadata: { name: elsewhere } } });
    try {
      await custom.createNamespacedCustomObject({
        ...G,
        namespace: elsewhere,
        plural: 'waggleenvironments',
        body: {
          apiVersion: 'waggle.dev/v1alpha1',
          kind: 'WaggleEnvironment',
          metadata: { name: 'not-mine' },
          spec: { runtime: 'python' },
        },
      });
      // A watched environment created after it is handled, so the operator is not just idle.
      await createEnv('mine', { runtime: 'python' });
      await until(
        envs,
        (items) => items.find((e) => e.metadata.name === 'mine')?.status?.phase === 'Running',
        'mine to run',
      );
      const other = (await custom.getNamespacedCustomObject({
        ...G,
        namespace: elsewhere,
        plural: 'waggleenvironments',
        name: 'not-mine',
      })) as WaggleEnvironment;
      expect(other.status).toBeUndefined();
      expect(other.metadata.finalizers ?? []).toEqual([]);
    } finally {
      await deleteTestNamespace(kc, elsewhere);
      await custom
        .deleteNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments', name: 'mine' })
        .catch(() => undefined);
      await until(envs, (items) => items.length === 0, 'cleanup', 20_000);
    }
  });

  it('retries a CreateVM cut off by the node-agent going away (CANCEL) instead of failing the environment', {
    timeout: 60_000,
  }, async () => {
    agent.createFailures.push(Code.Canceled, Code.Unavailable);
    const before = agent.createCalls.length;
    await createEnv('restarted-agent', { runtime: 'python' });
    const running = await until(
      envs,
      (items) => items.find((e) => e.metadata.name === 'restarted-agent')?.status?.phase === 'Running',
      'Running after two cut-off CreateVM calls',
      30_000,
    );
    const uid = running.find((e) => e.metadata.name === 'restarted-agent')?.metadata.uid as string;
    expect(agent.createCalls.slice(before).filter((id) => id === uid)).toHaveLength(3);
    await custom.deleteNamespacedCustomObject({
      ...G,
      namespace,
      plural: 'waggleenvironments',
      name: 'restarted-agent',
    });
    await until(envs, (items) => items.length === 0, 'cleanup', 20_000);
  });

  it('fails an environment whose VM disappears from its node (VMFailed)', { timeout: 60_000 }, async () => {
    await createEnv('vanishing', { runtime: 'python' });
    const running = await until(
      envs,
      (items) => items.find((e) => e.metadata.name === 'vanishing')?.status?.phase === 'Running',
      'Running',
    );
    const uid = running.find((e) => e.metadata.name === 'vanishing')?.metadata.uid as string;
    agent.vms.delete(uid); // the node-agent no longer has it
    const failed = await until(
      envs,
      (items) => items.find((e) => e.metadata.name === 'vanishing')?.status?.phase === 'Failed',
      'VMFailed',
      20_000,
    );
    const ready = failed
      .find((e) => e.metadata.name === 'vanishing')
      ?.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'VMFailed' });
    await custom.deleteNamespacedCustomObject({
      ...G,
      namespace,
      plural: 'waggleenvironments',
      name: 'vanishing',
    });
    await until(envs, (items) => items.length === 0, 'cleanup', 20_000);
  });
});

describe('a black-holed node', () => {
  it('holds none of the operator’s workers: its calls time out off the workers, other environments start', {
    timeout: 90_000,
  }, async () => {
    const stuck = await startFakeNodeAgent({ createDelayMs: 50 });
    const nodeName = `fake-stuck-${process.pid}`;
    const node = await registerFakeNode(custom, { name: nodeName, endpoint: stuck.url, vms: 8 });
    const names = Array.from({ length: 6 }, (_, i) => `stuck-${i}`); // more than the 4 workers
    try {
      for (const n of names) await createEnv(n, { runtime: 'python', nodeName });
      await until(
        envs,
        (items) => names.every((n) => items.find((e) => e.metadata.name === n)?.status?.phase === 'Running'),
        'six environments Running on the node',
      );
      // The node keeps heartbeating but stops answering calls; every Running environment's
      // periodic GetVM now hangs until its deadline.
      stuck.stalled = true;
      await new Promise((r) => setTimeout(r, 4_000));
      const t0 = Date.now();
      await createEnv('elsewhere', { runtime: 'python' });
      await until(
        envs,
        (items) => items.find((e) => e.metadata.name === 'elsewhere')?.status?.phase === 'Running',
        'an environment on a healthy node to start while the stuck node hangs',
        20_000,
      );
      expect(Date.now() - t0).toBeLessThan(15_000);
      // A call that timed out is not a verdict: the stuck node's environments are still Running.
      const items = await envs();
      for (const n of names) expect(items.find((e) => e.metadata.name === n)?.status?.phase).toBe('Running');
    } finally {
      stuck.stalled = false;
      await custom.deleteCollectionNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments' });
      await until(envs, (items) => items.length === 0, 'cleanup', 40_000);
      await node.remove();
      await stuck.stop();
    }
  });
});

describe('finalizer when the node object is gone', () => {
  it('waits (bounded) for the WaggleNode to return, then releases with a VMNotDestroyed Event', {
    timeout: 60_000,
  }, async () => {
    const gone = await startFakeNodeAgent({ createDelayMs: 50 });
    const nodeName = `fake-gone-${process.pid}`;
    const node = await registerFakeNode(custom, { name: nodeName, endpoint: gone.url, vms: 2 });
    try {
      await createEnv('orphaned', { runtime: 'python', nodeName });
      await until(
        envs,
        (items) => items.find((e) => e.metadata.name === 'orphaned')?.status?.phase === 'Running',
        'Running on the pinned node',
      );
      await node.remove(); // the WaggleNode object disappears (agent uninstalled, node deleted)
      await custom.deleteNamespacedCustomObject({
        ...G,
        namespace,
        plural: 'waggleenvironments',
        name: 'orphaned',
      });
      const t0 = Date.now();
      // Still held by the finalizer while the node may come back (destroyTimeoutMs = 3 s)…
      await new Promise((r) => setTimeout(r, 1_000));
      expect((await envs()).map((e) => e.metadata.name)).toContain('orphaned');
      // …then released.
      await until(envs, (items) => !items.some((e) => e.metadata.name === 'orphaned'), 'release', 20_000);
      // The deadline counts from metadata.deletionTimestamp, which has whole-second precision:
      // it may lie up to 1 s before t0, so the release can come 2 s after t0, never sooner.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1_950);
      // Events are sent off the reconcile's path: the release can be seen a moment before them.
      const events = await waitFor(
        () => core.listNamespacedEvent({ namespace, fieldSelector: 'involvedObject.name=orphaned' }),
        (r) => ['VMNotDestroyed', 'Terminating'].every((x) => r.items.some((e) => e.reason === x)),
        'VMNotDestroyed and Terminating events',
        { timeoutMs: 10_000, intervalMs: 250 },
      );
      const warning = events.items.find((e) => e.reason === 'VMNotDestroyed');
      expect(warning?.message).toMatch(new RegExp(`node ${nodeName} has not been registered for 3 s`));
      expect(events.items.map((e) => e.reason)).toContain('Terminating');
    } finally {
      await node.remove().catch(() => undefined);
      await gone.stop();
    }
  });
});

describe('a node that refuses a VM for lack of room', () => {
  it('sends the environment back to Pending (not Failed) and runs it once room frees', {
    timeout: 60_000,
  }, async () => {
    const small = await startFakeNodeAgent({ createDelayMs: 50, maxVMs: 1 });
    const nodeName = `fake-small-${process.pid}`;
    // The WaggleNode claims 3 slots; the agent has room for 1 (e.g. a VM the operator does not count).
    const node = await registerFakeNode(custom, { name: nodeName, endpoint: small.url, vms: 3 });
    const mine = (items: WaggleEnvironment[]) => items.filter((e) => e.metadata.name?.startsWith('tight-'));
    try {
      await createEnv('tight-1', { runtime: 'python', nodeName });
      await until(
        envs,
        (items) => mine(items).find((e) => e.metadata.name === 'tight-1')?.status?.phase === 'Running',
        'tight-1 Running',
      );
      await createEnv('tight-2', { runtime: 'python', nodeName });
      const refused = await until(
        envs,
        (items) =>
          /refused the VM/.test(
            mine(items).find((e) => e.metadata.name === 'tight-2')?.status?.message ?? '',
          ),
        'tight-2 refused by the node',
      );
      const second = refused.find((e) => e.metadata.name === 'tight-2');
      expect(second?.status?.phase).toBe('Pending');
      expect(second?.status?.conditions?.find((c) => c.type === 'Scheduled')?.reason).toBe('Unschedulable');
      await custom.deleteNamespacedCustomObject({
        ...G,
        namespace,
        plural: 'waggleenvironments',
        name: 'tight-1',
      });
      await until(
        envs,
        (items) => mine(items).length === 1 && mine(items)[0]?.status?.phase === 'Running',
        'tight-2 Running once tight-1 is gone',
      );
      expect(mine(await envs()).some((e) => e.status?.phase === 'Failed')).toBe(false);
    } finally {
      await custom
        .deleteCollectionNamespacedCustomObject({ ...G, namespace, plural: 'waggleenvironments' })
        .catch(() => undefined);
      await until(envs, (items) => items.length === 0, 'cleanup', 20_000);
      await node.remove();
      await small.stop();
    }
  });
});
