import {
  k8sTime,
  type WaggleEnvironment,
  type WaggleEnvironmentStatus,
  type WaggleNode,
  type WagglePool,
} from '@waggle/crds';
import { VMOrigin } from '@waggle/node-agent/client';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { WARM_BIND_GRACE_MS } from './phases/boot.ts';
import type { EnvironmentWriter, VmAgent, VmAgents } from './ports.ts';
import { EnvironmentReconciler } from './reconciler.ts';
import { FINALIZER } from './store.ts';

// Creates from a warm pool (docs/adr/0014, "The create path") against in-memory fakes: which
// node is picked, what CreateVM carries, and how many writes a create costs.

const T0 = Date.parse('2026-12-02T10:00:00Z');
const SPEC = {
  runtime: 'python',
  resources: { cpus: 1, memoryMiB: 512, diskMiB: 2048 },
  network: { egress: 'all' },
};

type CreateRequest = { spec?: { vmId?: string }; pool?: string };

class World {
  now = T0;
  readonly envs = new Map<string, WaggleEnvironment>();
  readonly nodes: WaggleNode[] = [];
  readonly pools: WagglePool[] = [];
  /** Every write, in order: "finalizer" or the phase a status write sets. */
  readonly writes: string[] = [];
  readonly creates: Array<{ node: string; req: CreateRequest }> = [];
  readonly destroyed: string[] = [];
  origin = VMOrigin.VM_ORIGIN_WARM;
  createHangs = false;
  /** The next status write setting this phase fails with a conflict. */
  failNextWrite: string | undefined;
  readonly enqueued: string[] = [];
  #rv = 1;

  readonly store: EnvironmentWriter = {
    setFinalizer: async (env) => {
      this.writes.push('finalizer');
      return this.#write({ ...env, metadata: { ...env.metadata, finalizers: [FINALIZER] } });
    },
    updateStatus: async (env, status: WaggleEnvironmentStatus) => {
      if (this.failNextWrite && status.phase === this.failNextWrite) {
        this.failNextWrite = undefined;
        throw Object.assign(new Error('conflict: the object has been modified'), { code: 409 });
      }
      this.writes.push(status.phase ?? '?');
      return this.#write({ ...env, status });
    },
    delete: async () => undefined,
  };

  readonly agents: VmAgents = {
    for: (_endpoint, node): VmAgent =>
      ({
        createVM: async (req: CreateRequest) => {
          this.creates.push({ node, req });
          if (this.createHangs) return new Promise(() => undefined);
          return { vm: { spec: req.spec, origin: this.origin } };
        },
        getVM: async () => ({ vm: {} }),
        destroyVM: async (req: { vmId: string }) => {
          this.destroyed.push(`${node}/${req.vmId}`);
          return { existed: true };
        },
      }) as unknown as VmAgent,
  };

  #write(env: WaggleEnvironment): WaggleEnvironment {
    const next = structuredClone({
      ...env,
      metadata: { ...env.metadata, resourceVersion: String(++this.#rv) },
    });
    this.envs.set(`${next.metadata.namespace}/${next.metadata.name}`, next);
    return next;
  }

  addNode(name: string, warm: Record<string, number> = {}, heartbeatAt = T0 - 10_000): void {
    this.nodes.push({
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleNode',
      metadata: { name },
      spec: { unschedulable: false },
      status: {
        endpoint: `https://${name}:7443`,
        capacity: { vms: 10, cpus: 64, memoryMiB: 65_536 },
        runtimes: ['python', 'node', 'shell'],
        pools: Object.entries(warm).map(([pool, ready]) => ({ name: pool, ready, booting: 0 })),
        lastHeartbeatTime: k8sTime(new Date(heartbeatAt)),
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'AgentReady',
            message: '',
            lastTransitionTime: k8sTime(new Date(T0)),
          },
        ],
      },
    });
  }

  addPool(name: string, template: Record<string, unknown> = SPEC, namespace = 'ns'): void {
    this.pools.push({
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WagglePool',
      metadata: { name, namespace },
      spec: { template, replicas: 2 },
    } as unknown as WagglePool);
  }

  addEnv(name: string, spec: Record<string, unknown> = SPEC, finalizers?: string[]): string {
    this.#write({
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleEnvironment',
      metadata: {
        name,
        namespace: 'ns',
        uid: `uid-${name}`,
        generation: 1,
        creationTimestamp: k8sTime(new Date(T0)),
        ...(finalizers ? { finalizers } : {}),
      },
      spec: { idleTimeout: '30m', ...spec },
    } as unknown as WaggleEnvironment);
    return `ns/${name}`;
  }

  reconciler(): EnvironmentReconciler {
    return new EnvironmentReconciler({
      getEnv: (key) => this.envs.get(key),
      listEnvs: () => [...this.envs.values()],
      getNode: (name) => this.nodes.find((n) => n.metadata.name === name),
      listNodes: () => this.nodes,
      listPools: () => this.pools,
      nodeSilentForMs: () => 0,
      store: this.store,
      agents: this.agents,
      events: { record: async () => undefined },
      log: pino({ level: 'silent' }),
      config: {
        nodeStaleAfterMs: 30_000,
        unschedulableRetryMs: 10_000,
        destroyTimeoutMs: 120_000,
        verifyEveryMs: 30_000,
        warmBindWaitMs: 20,
      },
      enqueue: (key) => this.enqueued.push(key),
      now: () => new Date(this.now),
    });
  }

  status(key: string) {
    return this.envs.get(key)?.status;
  }
}

const drain = () => new Promise((r) => setImmediate(r));

/**
 * Reconciles as the watch and the queue would: after every write (its event) and every finished
 * node-agent call. Extra passes over a settled environment must write nothing.
 */
async function createToRunning(w: World, key: string, r = w.reconciler()) {
  for (let pass = 0; pass < 6; pass++) {
    await r.reconcile(key);
    await drain();
  }
  return r;
}

describe('an environment matching a warm pool', () => {
  it('is placed on the node holding a ready warm VM and created from it in one status write', async () => {
    const w = new World();
    w.addNode('a'); // emptier by name, but holds no warm VM
    w.addNode('b', { 'ns/python-small': 1 });
    w.addPool('python-small');
    const key = w.addEnv('e');
    await createToRunning(w, key);

    expect(w.creates).toEqual([{ node: 'b', req: expect.objectContaining({ pool: 'ns/python-small' }) }]);
    expect(w.status(key)).toMatchObject({
      phase: 'Running',
      nodeName: 'b',
      pool: 'ns/python-small',
      createdFrom: 'warm',
    });
    // The bind is done before any status write: Running says where, with both conditions (a
    // cold create writes Scheduled, Booting, Running).
    expect(w.writes).toEqual(['finalizer', 'Running']);
    expect(
      w
        .status(key)
        ?.conditions?.map((c) => `${c.type}=${c.status}`)
        .sort(),
    ).toEqual(['Ready=True', 'Scheduled=True']);
  });

  it('costs no write but Running when its creator (the gateway) set the finalizer', async () => {
    const w = new World();
    w.addNode('a', { 'ns/python-small': 1 });
    w.addPool('python-small');
    const key = w.addEnv('e', SPEC, [FINALIZER]);
    await createToRunning(w, key);
    expect(w.status(key)).toMatchObject({ phase: 'Running', nodeName: 'a', createdFrom: 'warm' });
    expect(w.writes).toEqual(['Running']);
  });

  it('binds on the same node again when the Running write after a bind fails', async () => {
    const w = new World();
    // Both nodes hold a warm VM; once a's is bound, a fresh placement would go to b.
    w.addNode('a', { 'ns/python-small': 1 });
    w.addNode('b', { 'ns/python-small': 1 });
    for (const name of ['x1', 'x2']) {
      const env = w.envs.get(w.addEnv(name)) as WaggleEnvironment;
      env.status = { phase: 'Running', nodeName: 'b' };
    }
    w.addPool('python-small');
    w.failNextWrite = 'Running';
    const key = w.addEnv('e');
    const r = w.reconciler();
    await expect(r.reconcile(key)).rejects.toThrow(/conflict/);
    await createToRunning(w, key, r);
    // The bind's result is kept for the retry (pinned to its node): no second CreateVM.
    expect(w.creates.map((c) => c.node)).toEqual(['a']);
    expect(w.status(key)).toMatchObject({ phase: 'Running', nodeName: 'a' });
  });

  it('keeps its node when the bind was slow and the Scheduled write after it failed', async () => {
    const w = new World();
    w.addNode('a', { 'ns/python-small': 1 });
    w.addNode('b', { 'ns/python-small': 1 });
    w.addPool('python-small');
    w.createHangs = true; // the node restores or boots instead: the bind is not done at once
    w.failNextWrite = 'Scheduled';
    const key = w.addEnv('e', SPEC, [FINALIZER]);
    const r = w.reconciler();
    await expect(r.reconcile(key)).rejects.toThrow(/conflict/);
    const first = w.creates[0]?.node as string;
    // Meanwhile its node got busier: a fresh placement would pick the other one.
    for (const name of ['x1', 'x2']) {
      const env = w.envs.get(w.addEnv(name)) as WaggleEnvironment;
      env.status = { phase: 'Running', nodeName: first };
    }
    await r.reconcile(key);
    expect(w.status(key)).toMatchObject({ phase: 'Scheduled', nodeName: first });
    expect(w.creates.map((c) => c.node)).toEqual([first]); // its call in flight is the one
  });

  it('destroys the bound VM when the environment is deleted before its placement was written', async () => {
    const w = new World();
    w.addNode('a', { 'ns/python-small': 1 });
    w.addPool('python-small');
    w.failNextWrite = 'Running'; // e.g. the deletion changed the object under the bind
    const key = w.addEnv('e', SPEC, [FINALIZER]);
    const r = w.reconciler();
    await expect(r.reconcile(key)).rejects.toThrow(/conflict/);
    const env = w.envs.get(key) as WaggleEnvironment;
    env.metadata.deletionTimestamp = k8sTime(new Date(T0));
    await r.reconcile(key);
    expect(w.destroyed).toEqual(['a/uid-e']); // no status names a, the bind's tag does
  });

  it('does not call the node again from a view older than its Running write', async () => {
    const w = new World();
    w.addNode('a', { 'ns/python-small': 1 });
    w.addPool('python-small');
    const key = w.addEnv('e', SPEC, [FINALIZER]);
    const before = structuredClone(w.envs.get(key) as WaggleEnvironment);
    const r = w.reconciler();
    await r.reconcile(key);
    expect(w.status(key)?.phase).toBe('Running');
    const written = w.envs.get(key) as WaggleEnvironment;
    w.envs.set(key, before); // the cache has not shown the write yet; the call's completion queued the key
    await r.reconcile(key);
    expect(w.creates).toHaveLength(1);
    expect(w.writes).toEqual(['Running']);
    w.envs.set(key, written);
    await createToRunning(w, key, r);
    expect(w.creates).toHaveLength(1);
  });

  it('boots cold with three status writes when no pool matches', async () => {
    const w = new World();
    w.addNode('a');
    w.addPool('python-big', { ...SPEC, resources: { cpus: 2, memoryMiB: 1024, diskMiB: 2048 } });
    w.origin = VMOrigin.VM_ORIGIN_COLD;
    const key = w.addEnv('e');
    await createToRunning(w, key);
    expect(w.creates[0]?.req.pool).toBe('');
    expect(w.status(key)).toMatchObject({ phase: 'Running', createdFrom: 'cold' });
    expect(w.status(key)?.pool).toBeUndefined();
    expect(w.writes).toEqual(['finalizer', 'Scheduled', 'Booting', 'Running']);
  });

  it('falls back to the normal placement when no node holds a warm VM, still naming the pool', async () => {
    const w = new World();
    w.addNode('a');
    w.addPool('python-small');
    w.origin = VMOrigin.VM_ORIGIN_RESTORED;
    const key = w.addEnv('e');
    await createToRunning(w, key);
    expect(w.creates).toEqual([{ node: 'a', req: expect.objectContaining({ pool: 'ns/python-small' }) }]);
    expect(w.status(key)).toMatchObject({ phase: 'Running', createdFrom: 'restored' });
  });

  it('does not count a warm VM twice: the second of two creates goes elsewhere', async () => {
    const w = new World();
    w.addNode('a', { 'ns/python-small': 1 });
    w.addNode('b', { 'ns/python-small': 1 });
    w.addPool('python-small');
    for (const name of ['x1', 'x2']) {
      // b is busier: only the warm VM can draw the second create there.
      const env = w.envs.get(w.addEnv(name)) as WaggleEnvironment;
      env.status = { phase: 'Running', nodeName: 'b' };
    }
    w.createHangs = true; // both creates in flight: the reports do not show the binds yet
    const r = w.reconciler();
    await r.reconcile(w.addEnv('e1'));
    await r.reconcile(w.addEnv('e2'));
    expect(w.creates.map((c) => c.node).sort()).toEqual(['a', 'b']);
  });

  it('does not count a warm VM bound since the node last reported: the next create goes elsewhere', async () => {
    const w = new World();
    w.addNode('a', { 'ns/python-small': 1 });
    w.addNode('b', { 'ns/python-small': 1 });
    w.addPool('python-small');
    for (const name of ['x1', 'x2']) {
      // b is busier: only the warm VM can draw the second create there.
      const env = w.envs.get(w.addEnv(name)) as WaggleEnvironment;
      env.status = { phase: 'Running', nodeName: 'b' };
    }
    const first = w.addEnv('e1');
    await createToRunning(w, first);
    expect(w.status(first)).toMatchObject({ nodeName: 'a', createdFrom: 'warm' });
    const second = w.addEnv('e2');
    await createToRunning(w, second);
    expect(w.status(second)?.nodeName).toBe('b');
    // a heartbeats after the bind (its replacement is ready): a warm VM there again.
    const a = w.nodes.find((n) => n.metadata.name === 'a') as WaggleNode;
    a.status = { ...a.status, lastHeartbeatTime: k8sTime(new Date(T0 + 1_000)) };
    w.now = T0 + 2_000;
    const third = w.addEnv('e3');
    await createToRunning(w, third);
    expect(w.status(third)?.nodeName).toBe('a');
  });

  it('says Booting after the grace when the pooled create turns out slow (no warm VM left)', async () => {
    const w = new World();
    w.addNode('a', { 'ns/python-small': 1 });
    w.addPool('python-small');
    w.createHangs = true;
    const key = w.addEnv('e');
    const r = w.reconciler();
    const first = await r.reconcile(key);
    expect(first?.requeueAfterMs).toBe(WARM_BIND_GRACE_MS);
    await r.reconcile(key); // the watch event of the Scheduled write: within the grace
    expect(w.status(key)?.phase).toBe('Scheduled');
    w.now += WARM_BIND_GRACE_MS;
    await r.reconcile(key);
    expect(w.status(key)?.phase).toBe('Booting');
    expect(w.creates).toHaveLength(1);
  });

  it.each([
    ['another namespace', () => ({ ns: 'other', spec: SPEC })],
    [
      'other resources',
      () => ({ ns: 'ns', spec: { ...SPEC, resources: { cpus: 2, memoryMiB: 512, diskMiB: 2048 } } }),
    ],
    ['other egress', () => ({ ns: 'ns', spec: { ...SPEC, network: { egress: 'none' } } })],
  ])('is not created from a pool of %s', async (_case, pool) => {
    const w = new World();
    w.addNode('a', { 'other/p': 1, 'ns/p': 1 });
    const { ns, spec } = pool();
    w.addPool('p', spec, ns);
    const key = w.addEnv('e');
    await createToRunning(w, key);
    expect(w.creates[0]?.req.pool).toBe('');
  });
});
