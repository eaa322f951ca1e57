import {
  k8sTime,
  LAST_ACTIVITY_ANNOTATION,
  type WaggleEnvironment,
  type WaggleEnvironmentStatus,
  type WaggleNode,
} from '@waggle/crds';
import { Code, ConnectError, ENV_ID_HEADER, ImagePullPhase, VMState } from '@waggle/node-agent/client';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { InvolvedObject } from './events.ts';
import type { EnvironmentWriter, EventSink, VmAgent, VmAgents } from './ports.ts';
import { EnvironmentReconciler, type ReconcilerConfig, type ReconcilerDeps } from './reconciler.ts';
import { FINALIZER } from './store.ts';

// Table-driven tests of the reconciler's phase transitions against in-memory fakes of its ports
// (store, node-agent clients, events, clock). The same reconciler runs against a real apiserver
// and fake node-agents in operator/test/reconciler.test.ts; these run in milliseconds.

const T0 = Date.parse('2026-12-01T10:00:00Z');
const DIGEST = `sha256:${'ab'.repeat(32)}`;
const CONFIG: ReconcilerConfig = {
  nodeStaleAfterMs: 30_000,
  nodeLostGraceMs: 600_000,
  agentCallTimeoutMs: 15_000,
  unschedulableRetryMs: 10_000,
  destroyTimeoutMs: 120_000,
  verifyEveryMs: 30_000,
  createVMTimeoutMs: 300_000,
};

type Outcome<T> = { ok: T } | { code: Code; message?: string } | 'hang';
const settle = <T>(o: Outcome<T>): Promise<T> =>
  o === 'hang'
    ? new Promise<T>(() => undefined)
    : 'ok' in o
      ? Promise.resolve(o.ok)
      : Promise.reject(new ConnectError(o.message ?? 'failed', o.code));

/** The cluster and one node-agent, in memory. */
class World {
  now = T0;
  readonly envs = new Map<string, WaggleEnvironment>();
  readonly nodes = new Map<string, WaggleNode>();
  /** How long each node's heartbeat has been silent. */
  readonly silentMs = new Map<string, number>();
  readonly events: Array<{ type: string; reason: string; message: string }> = [];
  readonly enqueued: string[] = [];
  readonly calls: string[] = [];
  createVM: Outcome<object> = { ok: {} };
  getVM: Outcome<object> = { ok: { vm: { state: VMState.VM_STATE_RUNNING } } };
  destroyVM: Outcome<{ existed: boolean }> = { ok: { existed: true } };
  suspendVM: Outcome<object> = { ok: { vm: {}, stateBytes: 300n * 2n ** 20n, suspendMs: 900 } };
  resumeVM: Outcome<object> = { ok: { vm: {}, resumeMs: 420 } };
  /** PullImage: streams these steps, waits for `pullGate` (when set), then ends with the outcome. */
  pullSteps: ImagePullPhase[] = [ImagePullPhase.RESOLVING, ImagePullPhase.PULLING];
  pullGate: Promise<void> | undefined;
  readonly pullRequests: Array<{ image: string; vmId: string }> = [];
  pullImage: Outcome<{ digest: string; cached: boolean }> = { ok: { digest: DIGEST, cached: false } };
  #rv = 1;

  readonly store: EnvironmentWriter = {
    setFinalizer: async (env, present) => {
      const current = this.#current(env);
      const rest = (current.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
      const next = this.#write({
        ...current,
        metadata: { ...current.metadata, finalizers: present ? [...rest, FINALIZER] : rest },
      });
      if (!present && next.metadata.deletionTimestamp) this.envs.delete(keyOf(next));
      return next;
    },
    updateStatus: async (env, status: WaggleEnvironmentStatus) =>
      this.#write({ ...this.#current(env), status }),
    delete: async (env) => {
      const current = this.envs.get(keyOf(env));
      if (!current) return;
      if (current.metadata.finalizers?.length) {
        this.#write({
          ...current,
          metadata: { ...current.metadata, deletionTimestamp: k8sTime(new Date(this.now)) },
        });
      } else this.envs.delete(keyOf(env));
    },
  };

  readonly events$: EventSink = {
    record: async (_obj: InvolvedObject, type, reason, message) => {
      this.events.push({ type, reason, message });
    },
  };

  readonly agents: VmAgents = {
    for: (endpoint, node): VmAgent => {
      const world = this;
      expect(endpoint).toBe(`https://${node}:7443`);
      return {
        createVM: (async () => {
          this.calls.push('createVM');
          return settle(this.createVM);
        }) as unknown as VmAgent['createVM'],
        getVM: (async () => {
          this.calls.push('getVM');
          return settle(this.getVM);
        }) as unknown as VmAgent['getVM'],
        destroyVM: (async () => {
          this.calls.push('destroyVM');
          return settle(this.destroyVM);
        }) as unknown as VmAgent['destroyVM'],
        suspendVM: (async () => {
          this.calls.push('suspendVM');
          return settle(this.suspendVM);
        }) as unknown as VmAgent['suspendVM'],
        resumeVM: (async () => {
          this.calls.push('resumeVM');
          return settle(this.resumeVM);
        }) as unknown as VmAgent['resumeVM'],
        pullImage: async function* (this: void, req: { image: string; vmId: string }) {
          world.calls.push('pullImage');
          world.pullRequests.push({ image: req.image, vmId: req.vmId });
          for (const phase of world.pullSteps) yield { event: { case: 'phase', value: phase } };
          await world.pullGate;
          yield { event: { case: 'image', value: await settle(world.pullImage) } };
        } as unknown as VmAgent['pullImage'],
      };
    },
  };

  /** Stale-write check, as the apiserver does with resourceVersion. */
  #current(env: WaggleEnvironment): WaggleEnvironment {
    const current = this.envs.get(keyOf(env));
    if (!current) throw Object.assign(new Error('not found'), { code: 404 });
    if (current.metadata.resourceVersion !== env.metadata.resourceVersion) {
      throw Object.assign(new Error('conflict'), { code: 409 });
    }
    return current;
  }

  #write(env: WaggleEnvironment): WaggleEnvironment {
    const next = structuredClone({
      ...env,
      metadata: { ...env.metadata, resourceVersion: String(++this.#rv) },
    });
    this.envs.set(keyOf(next), next);
    return next;
  }

  addNode(
    name: string,
    opts: { vms?: number; ready?: boolean; silentMs?: number; ociImages?: boolean } = {},
  ): void {
    this.nodes.set(name, {
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleNode',
      metadata: { name },
      spec: {},
      status: {
        endpoint: `https://${name}:7443`,
        capacity: { vms: opts.vms ?? 10, cpus: 64, memoryMiB: 65_536 },
        runtimes: ['python', 'node', 'shell'],
        ...(opts.ociImages ? { ociImages: true } : {}),
        conditions: [
          {
            type: 'Ready',
            status: opts.ready === false ? 'False' : 'True',
            reason: 'Heartbeat',
            message: '',
            lastTransitionTime: k8sTime(new Date(T0)),
          },
        ],
      },
    } as unknown as WaggleNode);
    this.silentMs.set(name, opts.silentMs ?? 0);
  }

  addEnv(
    name: string,
    opts: {
      status?: WaggleEnvironmentStatus;
      finalizer?: boolean;
      idleTimeout?: string;
      idleAction?: 'Delete' | 'Suspend';
      maxLifetime?: string;
      createdAt?: number;
      image?: string;
    } = {},
  ): string {
    const env = {
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleEnvironment',
      metadata: {
        name,
        namespace: 'ns',
        uid: `uid-${name}`,
        generation: 1,
        creationTimestamp: k8sTime(new Date(opts.createdAt ?? T0)),
        ...(opts.finalizer === false ? {} : { finalizers: [FINALIZER] }),
      },
      spec: {
        runtime: 'python',
        resources: { cpus: 1, memoryMiB: 512, diskMiB: 2048 },
        network: { egress: 'all' },
        idleTimeout: opts.idleTimeout ?? '30m',
        idleAction: opts.idleAction ?? 'Delete',
        maxLifetime: opts.maxLifetime ?? '24h',
        ...(opts.image ? { image: opts.image } : {}),
      },
      ...(opts.status ? { status: opts.status } : {}),
    } as unknown as WaggleEnvironment;
    this.#write(env);
    return `ns/${name}`;
  }

  /** A reconciler over this world; `deps` replaces some of its views (e.g. a lagging cache). */
  reconciler(deps: Partial<ReconcilerDeps> = {}): EnvironmentReconciler {
    return new EnvironmentReconciler({
      getEnv: (key) => this.envs.get(key),
      listEnvs: () => [...this.envs.values()],
      getNode: (name) => this.nodes.get(name),
      listNodes: () => [...this.nodes.values()],
      nodeSilentForMs: (name) => this.silentMs.get(name) ?? Number.POSITIVE_INFINITY,
      store: this.store,
      agents: this.agents,
      events: this.events$,
      log: pino({ level: 'silent' }),
      config: CONFIG,
      enqueue: (key) => this.enqueued.push(key),
      now: () => new Date(this.now),
      ...deps,
    });
  }

  status(key: string): WaggleEnvironmentStatus | undefined {
    return this.envs.get(key)?.status;
  }

  condition(key: string, type: string) {
    return this.status(key)?.conditions?.find((c) => c.type === type);
  }

  reasons(): string[] {
    return this.events.map((e) => e.reason);
  }
}

const keyOf = (e: WaggleEnvironment) => `${e.metadata.namespace}/${e.metadata.name}`;
/** Lets off-worker node-agent calls finish (their completion enqueues the key). */
const drain = () => new Promise((r) => setImmediate(r));

/** Reconciles `key` like the work queue would: again while a finished call queued it. */
async function reconcileUntilQuiet(w: World, r: EnvironmentReconciler, key: string, passes = 8) {
  let result: Awaited<ReturnType<EnvironmentReconciler['reconcile']>>;
  for (let i = 0; i < passes; i++) {
    w.enqueued.length = 0;
    result = await r.reconcile(key);
    await drain();
    if (!w.enqueued.includes(key)) return result;
  }
  throw new Error(`${key} was still being queued after ${passes} passes: ${JSON.stringify(w.status(key))}`);
}

/** An environment placed on a healthy node whose CreateVM never answers (a boot in flight). */
async function withCreateInFlight() {
  const w = new World();
  w.addNode('n1');
  const key = w.addEnv('e');
  const r = w.reconciler();
  await r.reconcile(key); // Scheduled
  w.createVM = 'hang';
  await r.reconcile(key); // CreateVM in flight
  return { w, r, key };
}

/** Pushes a scheduled environment to Running against a healthy node. */
async function runningEnv(
  w: World,
  r: EnvironmentReconciler,
  name = 'e',
  opts: Parameters<World['addEnv']>[1] = {},
): Promise<string> {
  w.addNode('n1');
  const key = w.addEnv(name, opts);
  await reconcileUntilQuiet(w, r, key); // scheduled
  await reconcileUntilQuiet(w, r, key); // CreateVM → Running
  expect(w.status(key)?.phase).toBe('Running');
  w.events.length = 0;
  w.calls.length = 0;
  return key;
}

describe('a new environment', () => {
  it('gets its finalizer and a node in one pass, then boots to Running', async () => {
    const w = new World();
    w.addNode('n1');
    const key = w.addEnv('e', { finalizer: false });
    const r = w.reconciler();

    const first = await r.reconcile(key);
    expect(w.envs.get(key)?.metadata.finalizers).toEqual([FINALIZER]);
    expect(w.status(key)).toMatchObject({ phase: 'Scheduled', nodeName: 'n1' });
    expect(w.condition(key, 'Scheduled')).toMatchObject({ status: 'True', reason: 'Scheduled' });
    expect(first?.requeueAfterMs).toBe(CONFIG.verifyEveryMs);

    await r.reconcile(key);
    expect(w.status(key)).toMatchObject({ phase: 'Booting' });
    expect(w.condition(key, 'Ready')).toMatchObject({ status: 'False', reason: 'Booting' });
    await drain();
    expect(w.enqueued).toContain(key); // the finished CreateVM queues the key
    await r.reconcile(key);
    expect(w.status(key)).toMatchObject({
      phase: 'Running',
      vmId: 'uid-e',
      startedAt: k8sTime(new Date(T0)),
    });
    expect(w.condition(key, 'Ready')).toMatchObject({ status: 'True', reason: 'Running' });
    expect(w.reasons()).toEqual(['Scheduled', 'Running']);
    expect(w.calls).toEqual(['createVM']);
  });

  it.each([
    ['no node registered', () => undefined, /^0\/0 nodes are available: no WaggleNode is registered/],
    [
      'the only node not Ready',
      (w: World) => w.addNode('n1', { ready: false }),
      /^0\/1 nodes are available: 1 not ready$/,
    ],
    [
      'the only node silent',
      (w: World) => w.addNode('n1', { silentMs: 60_000 }),
      /^0\/1 nodes are available: 1 heartbeat is stale$/,
    ],
    [
      'the only node full',
      (w: World) => w.addNode('n1', { vms: 0 }),
      /^0\/1 nodes are available: 1 no free VM slot$/,
    ],
  ])('stays Pending with Unschedulable (once as an Event) when %s', async (_case, setup, reason) => {
    const w = new World();
    setup(w);
    const key = w.addEnv('e');
    const r = w.reconciler();
    const result = await r.reconcile(key);
    await r.reconcile(key);
    expect(w.status(key)?.phase).toBe('Pending');
    expect(w.condition(key, 'Scheduled')).toMatchObject({ status: 'False', reason: 'Unschedulable' });
    expect(w.status(key)?.message).toMatch(reason);
    expect(result?.requeueAfterMs).toBe(CONFIG.unschedulableRetryMs);
    expect(w.reasons()).toEqual(['Unschedulable']);
  });
});

describe('Scheduled × CreateVM outcome', () => {
  it.each<[string, Outcome<object>, { phase: string; throws?: boolean; reason?: string; node?: string }]>([
    ['succeeds', { ok: {} }, { phase: 'Running', reason: 'Running', node: 'n1' }],
    [
      'is cut off by an agent restart (Canceled)',
      { code: Code.Canceled },
      { phase: 'Booting', throws: true },
    ],
    ['finds the agent unavailable', { code: Code.Unavailable }, { phase: 'Booting', throws: true }],
    ['times out', { code: Code.DeadlineExceeded }, { phase: 'Booting', throws: true }],
    [
      'is refused for room (ResourceExhausted)',
      { code: Code.ResourceExhausted },
      { phase: 'Pending', reason: 'Unschedulable' },
    ],
    [
      'fails to boot (Internal)',
      { code: Code.Internal, message: 'kernel panic' },
      { phase: 'Failed', reason: 'VMFailed', node: 'n1' },
    ],
  ])('CreateVM %s', async (_case, outcome, want) => {
    const w = new World();
    w.addNode('n1');
    const key = w.addEnv('e');
    const r = w.reconciler();
    await r.reconcile(key); // Scheduled
    w.createVM = outcome;
    await r.reconcile(key); // starts CreateVM → Booting
    await drain();
    const pass = r.reconcile(key);
    if (want.throws) {
      await expect(pass).rejects.toBeInstanceOf(ConnectError); // the queue retries with backoff
    } else await pass;
    expect(w.status(key)?.phase).toBe(want.phase);
    if (want.reason) expect(w.condition(key, 'Ready')?.reason).toBe(want.reason);
    expect(w.status(key)?.nodeName).toBe(want.node ?? (want.phase === 'Pending' ? undefined : 'n1'));
    if (want.phase === 'Failed') expect(w.status(key)?.message).toBe('the VM did not start: kernel panic');
    if (want.phase === 'Pending') {
      expect(w.condition(key, 'Scheduled')).toMatchObject({ status: 'False', reason: 'Unschedulable' });
      // The slot was given back: the next pass places it again.
      await r.reconcile(key);
      expect(w.status(key)).toMatchObject({ phase: 'Scheduled', nodeName: 'n1' });
    }
  });

  it('with an image: says each step of the pull, then the digest, then boots to Running', async () => {
    const w = new World();
    w.addNode('n1', { ociImages: true });
    const key = w.addEnv('e', { image: 'registry.test/team/py:1' });
    const r = w.reconciler();
    let release = () => {};
    w.pullGate = new Promise<void>((done) => {
      release = done;
    });
    w.pullSteps = [ImagePullPhase.RESOLVING, ImagePullPhase.PULLING, ImagePullPhase.UNPACKING];

    await r.reconcile(key); // Scheduled
    await r.reconcile(key); // Booting: the pull starts
    expect(w.condition(key, 'ImageReady')).toMatchObject({ status: 'False', reason: 'PullingImage' });
    await drain();
    await r.reconcile(key);
    expect(w.status(key)).toMatchObject({
      phase: 'Booting',
      message: 'pulling image registry.test/team/py:1 on n1: unpacking the layers',
    });
    expect(w.condition(key, 'ImageReady')).toMatchObject({
      status: 'False',
      reason: 'PullingImage',
      message: 'n1: unpacking the layers',
    });
    expect(w.calls).toEqual(['pullImage']); // no CreateVM before the image is there

    release();
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)).toMatchObject({ phase: 'Running', imageDigest: DIGEST });
    expect(w.condition(key, 'ImageReady')).toMatchObject({ status: 'True', reason: 'ImagePulled' });
    expect(w.condition(key, 'ImageReady')?.message).toMatch(
      new RegExp(`^registry.test/team/py:1 is ${DIGEST}, pulled to n1 in \\d+\\.\\d s$`),
    );
    expect(w.calls).toEqual(['pullImage', 'createVM']);
    // Named for its VM: a retried create whose VM exists gets that VM's image, not a new pull.
    expect(w.pullRequests).toEqual([{ image: 'registry.test/team/py:1', vmId: 'uid-e' }]);
  });

  it('with an image the node cannot run: Failed with ImagePullFailed, and no CreateVM', async () => {
    const w = new World();
    w.addNode('n1', { ociImages: true });
    const key = w.addEnv('e', { image: 'registry.test/team/nosh:1' });
    w.pullImage = {
      code: Code.FailedPrecondition,
      message: 'image "registry.test/team/nosh:1" has no /bin/sh',
    };
    const r = w.reconciler();
    await r.reconcile(key); // Scheduled
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)?.phase).toBe('Failed');
    for (const type of ['Ready', 'ImageReady']) {
      expect(w.condition(key, type)).toMatchObject({ status: 'False', reason: 'ImagePullFailed' });
      expect(w.condition(key, type)?.message).toContain('has no /bin/sh');
    }
    expect(w.calls).toEqual(['pullImage']);
  });

  it('with an image on a node-agent older than PullImage: CreateVM pulls, ImageReady still ends True', async () => {
    const w = new World();
    w.addNode('n1', { ociImages: true });
    const key = w.addEnv('e', { image: 'registry.test/team/py:1' });
    w.pullImage = { code: Code.Unimplemented };
    w.pullSteps = [];
    const r = w.reconciler();
    await r.reconcile(key); // Scheduled
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)?.phase).toBe('Running');
    expect(w.condition(key, 'ImageReady')).toMatchObject({ status: 'True', reason: 'ImagePulled' });
    expect(w.calls).toEqual(['pullImage', 'createVM']);
  });

  it('a retried CreateVM after a transient failure runs the environment', async () => {
    const w = new World();
    w.addNode('n1');
    const key = w.addEnv('e');
    const r = w.reconciler();
    await r.reconcile(key);
    w.createVM = { code: Code.Unavailable };
    await r.reconcile(key);
    await drain();
    await expect(r.reconcile(key)).rejects.toThrow();
    w.createVM = { ok: {} };
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)?.phase).toBe('Running');
    expect(w.calls).toEqual(['createVM', 'createVM']);
  });
});

describe('Running × GetVM outcome', () => {
  it.each<[string, Outcome<object>, { phase: string; reason?: string; throws?: boolean; message?: RegExp }]>([
    [
      'the VM runs',
      { ok: { vm: { state: VMState.VM_STATE_RUNNING } } },
      { phase: 'Running', reason: 'Running' },
    ],
    [
      'the VM exited',
      { ok: { vm: { state: VMState.VM_STATE_FAILED, message: 'killed by OOM' } } },
      { phase: 'Failed', reason: 'VMExited', message: /stopped: killed by OOM/ },
    ],
    [
      'the VM is gone',
      { code: Code.NotFound },
      { phase: 'Failed', reason: 'VMFailed', message: /disappeared from n1/ },
    ],
    [
      'the agent does not answer',
      { code: Code.Unavailable },
      { phase: 'Running', reason: 'Running', throws: true },
    ],
  ])('%s', async (_case, outcome, want) => {
    const w = new World();
    const r = w.reconciler();
    const key = await runningEnv(w, r);
    w.getVM = outcome;
    await r.reconcile(key); // starts GetVM off the worker
    await drain();
    const pass = r.reconcile(key);
    if (want.throws) await expect(pass).rejects.toBeInstanceOf(ConnectError);
    else await pass;
    expect(w.status(key)?.phase).toBe(want.phase);
    expect(w.condition(key, 'Ready')?.reason).toBe(want.reason);
    if (want.message) expect(w.status(key)?.message).toMatch(want.message);
    expect(w.calls).toEqual(['getVM']);
  });
});

describe('phase × node state', () => {
  it.each(['Scheduled', 'Booting', 'Running'] as const)(
    '%s on a node silent past the stale window: VM kept, NodeReachable=False, then recovered',
    async (phase) => {
      const w = new World();
      w.addNode('n1', { silentMs: CONFIG.nodeStaleAfterMs + 5_000 });
      const key = w.addEnv('e', { status: { phase, nodeName: 'n1' } });
      const r = w.reconciler();
      const result = await r.reconcile(key);
      await r.reconcile(key);
      expect(w.status(key)?.phase).toBe(phase);
      expect(w.condition(key, 'NodeReachable')).toMatchObject({ status: 'False', reason: 'NodeUnreachable' });
      expect(w.condition(key, 'Ready')).toMatchObject({ status: 'False', reason: 'NodeUnreachable' });
      expect(result?.requeueAfterMs).toBe(CONFIG.verifyEveryMs);
      expect(w.calls).toEqual([]); // nothing is asked of a node that does not answer
      expect(w.reasons()).toEqual(['NodeUnreachable']); // one Event, not one per pass

      w.silentMs.set('n1', 0);
      await r.reconcile(key);
      expect(w.condition(key, 'NodeReachable')).toMatchObject({ status: 'True', reason: 'NodeReachable' });
      expect(w.condition(key, 'Ready')?.status).toBe(phase === 'Running' ? 'True' : 'False');
      expect(w.reasons()).toEqual(['NodeUnreachable', 'NodeReachable']);
    },
  );

  it.each(['Scheduled', 'Booting', 'Running'] as const)(
    '%s on a node silent past the node-lost grace: Failed NodeLost; its VM destroyed when the node returns',
    async (phase) => {
      const w = new World();
      w.addNode('n1', { silentMs: CONFIG.nodeStaleAfterMs + (CONFIG.nodeLostGraceMs ?? 0) });
      const key = w.addEnv('e', { status: { phase, nodeName: 'n1' } });
      const r = w.reconciler();
      await r.reconcile(key);
      expect(w.status(key)?.phase).toBe('Failed');
      expect(w.condition(key, 'Ready')?.reason).toBe('NodeLost');
      expect(w.status(key)?.message).toMatch(/no heartbeat for 630 s \(node-lost grace 600 s\)/);
      await reconcileUntilQuiet(w, r, key);
      expect(w.calls).toEqual([]); // not while it is silent

      w.silentMs.set('n1', 0);
      await reconcileUntilQuiet(w, r, key);
      await reconcileUntilQuiet(w, r, key);
      expect(w.calls).toEqual(['destroyVM']); // once
      expect(w.reasons()).toEqual(['NodeLost', 'VMDestroyed']);
      expect(w.status(key)?.phase).toBe('Failed'); // the object stays for the user to read
    },
  );

  it('waits without calling anything while the node is registered without an endpoint', async () => {
    const w = new World();
    w.addNode('n1');
    (w.nodes.get('n1')?.status as { endpoint?: string }).endpoint = undefined;
    const key = w.addEnv('e', { status: { phase: 'Scheduled', nodeName: 'n1' } });
    expect(await w.reconciler().reconcile(key)).toEqual({ requeueAfterMs: 1_000 });
    expect(w.calls).toEqual([]);
  });
});

describe('expiry (by the injected clock)', () => {
  it('deletes an environment idle past its timeout, with an Expired condition and Event', async () => {
    const w = new World();
    const r = w.reconciler();
    const key = await runningEnv(w, r);
    w.now += 29 * 60_000;
    const result = await reconcileUntilQuiet(w, r, key);
    expect(w.envs.get(key)?.metadata.deletionTimestamp).toBeUndefined();
    expect(result?.requeueAfterMs).toBeLessThanOrEqual(60_000);
    w.now += 61_000;
    await r.reconcile(key);
    expect(w.envs.get(key)?.metadata.deletionTimestamp).toBe(k8sTime(new Date(w.now)));
    expect(w.condition(key, 'Ready')).toMatchObject({
      reason: 'Expired',
      message: 'expired: idle timeout 30m reached',
    });
    expect(w.reasons()).toEqual(['Expired']);
  });

  it('keeps the expiry of a Failed environment current and expires it too', async () => {
    const w = new World();
    w.addNode('n1');
    const key = w.addEnv('e', { status: { phase: 'Failed', nodeName: 'n1' } });
    const r = w.reconciler();
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)?.expiresAt).toBe(k8sTime(new Date(T0 + 30 * 60_000)));
    w.now += 31 * 60_000;
    await r.reconcile(key);
    expect(w.envs.get(key)?.metadata.deletionTimestamp).toBeDefined();
  });
});

describe('deletion', () => {
  async function deleting(w: World, r: EnvironmentReconciler): Promise<string> {
    const key = await runningEnv(w, r);
    const env = w.envs.get(key) as WaggleEnvironment;
    await w.store.delete(env);
    return key;
  }

  it('destroys the VM, releases the finalizer, and lets pending environments try again', async () => {
    const w = new World();
    const r = w.reconciler();
    const key = await deleting(w, r);
    const pending = w.addEnv('waiting', { status: { phase: 'Pending' } });
    await reconcileUntilQuiet(w, r, key);
    expect(w.envs.has(key)).toBe(false);
    expect(w.calls).toEqual(['destroyVM']);
    expect(w.reasons()).toEqual(['Terminating']);
    expect(w.enqueued).toContain(pending);
  });

  it('retries a failed destroy with backoff until destroyTimeout after the deletionTimestamp, then releases', async () => {
    const w = new World();
    const r = w.reconciler();
    const key = await deleting(w, r);
    w.destroyVM = { code: Code.Unavailable, message: 'connection refused' };
    await r.reconcile(key);
    await drain();
    await expect(r.reconcile(key)).rejects.toThrow(/connection refused/);
    expect(w.envs.has(key)).toBe(true);

    // A new operator (failover) past the deadline: the deadline comes from the object, not memory;
    // its own failures are still retried for a short window before it gives up.
    w.now += CONFIG.destroyTimeoutMs;
    const successor = w.reconciler();
    await successor.reconcile(key); // its own DestroyVM
    await drain();
    await expect(successor.reconcile(key)).rejects.toThrow(/connection refused/);
    expect(w.envs.has(key)).toBe(true);
    w.now += 30_000;
    await successor.reconcile(key);
    await drain();
    await successor.reconcile(key);
    expect(w.envs.has(key)).toBe(false);
    expect(w.events.at(-1)).toMatchObject({
      type: 'Warning',
      reason: 'VMNotDestroyed',
      message: expect.stringMatching(
        /could not destroy the VM on n1 for 120 s since the deletion \(connection refused\)/,
      ),
    });
  });

  it('gives a destroy delayed past the deadline by a slow CreateVM its own retries (one failure releases nothing)', async () => {
    const w = new World();
    w.addNode('n1');
    const key = w.addEnv('e');
    const r = w.reconciler();
    await r.reconcile(key); // Scheduled
    let finishCreate: () => void = () => undefined;
    w.createVM = 'hang';
    const created = new Promise<object>((resolve) => {
      finishCreate = () => resolve({});
    });
    w.agents.for = ((original) => (endpoint: string, node: string) => {
      const agent = original(endpoint, node);
      return { ...agent, createVM: (() => created) as unknown as VmAgent['createVM'] };
    })(w.agents.for.bind(w.agents));
    await r.reconcile(key); // CreateVM in flight
    await w.store.delete(w.envs.get(key) as WaggleEnvironment);
    expect(await r.reconcile(key)).toEqual({ requeueAfterMs: 5_000 });
    w.now += 200_000; // the boot takes longer than destroyTimeout
    finishCreate();
    await drain();
    w.destroyVM = { code: Code.Unavailable, message: 'agent restarting' };
    await r.reconcile(key); // DestroyVM
    await drain();
    await expect(r.reconcile(key)).rejects.toThrow(/agent restarting/);
    expect(w.envs.has(key)).toBe(true); // not released on one failure
    w.destroyVM = { ok: { existed: true } };
    await reconcileUntilQuiet(w, r, key);
    expect(w.envs.has(key)).toBe(false);
    expect(w.reasons()).not.toContain('VMNotDestroyed');
  });

  it('waits for a deregistered node, bounded by destroyTimeout since the deletion', async () => {
    const w = new World();
    const r = w.reconciler();
    const key = await deleting(w, r);
    w.nodes.delete('n1');
    w.now += 100_000;
    expect(await r.reconcile(key)).toEqual({ requeueAfterMs: 5_000 });
    w.now += 19_000;
    expect(await r.reconcile(key)).toEqual({ requeueAfterMs: 1_000 });
    w.now += 1_000;
    await r.reconcile(key);
    expect(w.envs.has(key)).toBe(false);
    expect(w.events.at(-1)?.message).toMatch(/node n1 has not been registered for 120 s since the deletion/);
    expect(w.calls).toEqual([]);
  });

  it('waits for a CreateVM in flight before destroying (no VM left behind)', async () => {
    const { w, r, key } = await withCreateInFlight();
    await w.store.delete(w.envs.get(key) as WaggleEnvironment);
    expect(await r.reconcile(key)).toEqual({ requeueAfterMs: 5_000 });
    expect(w.calls).toEqual(['createVM']);
    expect(w.status(key)?.phase).toBe('Terminating');
  });

  it('releases at once an environment that never had a node', async () => {
    const w = new World();
    const key = w.addEnv('e', { status: { phase: 'Pending' } });
    await w.store.delete(w.envs.get(key) as WaggleEnvironment);
    await w.reconciler().reconcile(key);
    expect(w.envs.has(key)).toBe(false);
    expect(w.events).toEqual([
      { type: 'Normal', reason: 'Terminating', message: 'Deleting (no VM was started)' },
    ]);
  });
});

describe('more transitions', () => {
  it('Booting with its CreateVM still running: no second call, no status change', async () => {
    const { w, r, key } = await withCreateInFlight();
    const booting = w.envs.get(key)?.metadata.resourceVersion;
    expect(await r.reconcile(key)).toBeUndefined();
    expect(await r.reconcile(key)).toBeUndefined();
    expect(w.calls).toEqual(['createVM']);
    expect(w.envs.get(key)?.metadata.resourceVersion).toBe(booting);
  });

  it('a Failed environment whose node is registered without an endpoint is kept, nothing called', async () => {
    const w = new World();
    w.addNode('n1');
    (w.nodes.get('n1')?.status as { endpoint?: string }).endpoint = undefined;
    const key = w.addEnv('e', { status: { phase: 'Failed', nodeName: 'n1' } });
    const result = await w.reconciler().reconcile(key);
    expect(result?.requeueAfterMs).toBe(30 * 60_000);
    expect(w.calls).toEqual([]);
    expect(w.status(key)?.phase).toBe('Failed');
  });

  it('a Pending environment expires too (nothing was started)', async () => {
    const w = new World();
    const key = w.addEnv('e', { idleTimeout: '1m' });
    const r = w.reconciler();
    await r.reconcile(key);
    expect(w.status(key)?.phase).toBe('Pending');
    w.now += 61_000;
    await r.reconcile(key);
    expect(w.envs.get(key)?.metadata.deletionTimestamp).toBeDefined();
    await r.reconcile(key);
    expect(w.envs.has(key)).toBe(false);
    expect(w.reasons()).toEqual(['Unschedulable', 'Expired', 'Terminating']);
    expect(w.calls).toEqual([]);
  });

  it('acts on the cached object when the cache lags a write (a stale write is a conflict, retried)', async () => {
    const w = new World();
    w.addNode('n1');
    const key = w.addEnv('e');
    const stale = structuredClone(w.envs.get(key) as WaggleEnvironment);
    const r = w.reconciler();
    await r.reconcile(key); // Scheduled
    const lagging = w.reconciler({ getEnv: () => stale, listEnvs: () => [stale] });
    await expect(lagging.reconcile(key)).rejects.toMatchObject({ code: 409 });
    expect(w.status(key)).toMatchObject({ phase: 'Scheduled', nodeName: 'n1' });
  });
});

describe('placement', () => {
  it('never overcommits a node across concurrent reconciles before the cache shows the writes', async () => {
    const w = new World();
    w.addNode('n1', { vms: 2 });
    const keys = ['a', 'b', 'c', 'd'].map((n) => w.addEnv(n));
    // A cache that lags: it still shows every environment without a node.
    const stale = [...w.envs.values()].map((e) => structuredClone(e));
    const r = w.reconciler({ listEnvs: () => stale, enqueue: () => undefined });
    await Promise.all(keys.map((k) => r.reconcile(k)));
    expect(keys.map((k) => w.status(k)?.phase).sort()).toEqual([
      'Pending',
      'Pending',
      'Scheduled',
      'Scheduled',
    ]);
  });
});

describe('suspend on idle (idleAction Suspend)', () => {
  const IDLE_MS = 30 * 60_000;

  /** Records use of the environment at `at`, as the gateway's activity annotation does. */
  function touch(w: World, key: string, at = w.now) {
    const env = w.envs.get(key) as WaggleEnvironment;
    env.metadata.annotations = { [LAST_ACTIVITY_ANNOTATION]: k8sTime(new Date(at)) };
  }

  /** A Running environment with idleAction Suspend, taken past its idle timeout to Suspended. */
  async function suspendedEnv() {
    const w = new World();
    const r = w.reconciler();
    const key = await runningEnv(w, r, 'e', { idleAction: 'Suspend' });
    w.now += IDLE_MS;
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)?.phase).toBe('Suspended');
    w.events.length = 0;
    w.calls.length = 0;
    return { w, r, key };
  }

  it.each<['Delete' | 'Suspend', { phase: string; deleted: boolean; calls: string[]; reasons: string[] }]>([
    ['Delete', { phase: 'Running', deleted: true, calls: [], reasons: ['Expired'] }],
    ['Suspend', { phase: 'Suspended', deleted: false, calls: ['suspendVM'], reasons: ['Suspended'] }],
  ])('at the idle deadline, idleAction %s', async (idleAction, want) => {
    const w = new World();
    const r = w.reconciler();
    const key = await runningEnv(w, r, 'e', { idleAction });
    w.now += IDLE_MS - 1_000;
    const before = await reconcileUntilQuiet(w, r, key);
    expect(before?.requeueAfterMs).toBe(1_000); // woken at the idle deadline either way
    w.calls.length = 0;
    w.now += 1_000;
    await r.reconcile(key);
    if (idleAction === 'Suspend') {
      // While SuspendVM runs: still Running, but not Ready (the gateway waits instead of calling).
      expect(w.status(key)?.phase).toBe('Running');
      expect(w.condition(key, 'Ready')).toMatchObject({ status: 'False', reason: 'Suspended' });
      expect(w.status(key)?.message).toBe('suspending the VM on n1: idle for 30m');
      await drain();
      await r.reconcile(key);
    }
    expect(w.status(key)?.phase).toBe(want.phase);
    expect(w.envs.get(key)?.metadata.deletionTimestamp !== undefined).toBe(want.deleted);
    expect(w.calls).toEqual(want.calls);
    expect(w.reasons()).toEqual(want.reasons);
    if (idleAction === 'Suspend') {
      expect(w.status(key)).toMatchObject({
        suspendedAt: k8sTime(new Date(w.now)),
        lastActivityTime: k8sTime(new Date(T0)), // the activity it judged idle
        expiresAt: k8sTime(new Date(T0 + 24 * 3_600_000)), // only the lifetime deletes it now
      });
      expect(w.condition(key, 'Ready')).toMatchObject({ status: 'False', reason: 'Suspended' });
      expect(w.events[0]?.message).toBe('VM suspended on n1 after 30m idle (300 MiB saved in 900 ms)');
    }
  });

  it('stays suspended, calling nothing, until used; activity resumes it to Running', async () => {
    const { w, r, key } = await suspendedEnv();
    w.now += 3_600_000;
    const idle = await reconcileUntilQuiet(w, r, key);
    expect(idle?.requeueAfterMs).toBe(24 * 3_600_000 - IDLE_MS - 3_600_000); // until its lifetime
    expect(w.calls).toEqual([]);

    touch(w, key);
    await r.reconcile(key);
    expect(w.status(key)?.message).toBe('resuming the VM on n1');
    await reconcileUntilQuiet(w, r, key);
    expect(w.calls.filter((c) => c !== 'getVM')).toEqual(['resumeVM']);
    expect(w.status(key)).toMatchObject({
      phase: 'Running',
      resumedAt: k8sTime(new Date(w.now)),
      lastResumeMs: 420,
      lastActivityTime: k8sTime(new Date(w.now)),
      message: 'running on n1 (resumed in 420 ms)',
    });
    expect(w.condition(key, 'Ready')).toMatchObject({ status: 'True', reason: 'Running' });
    expect(w.reasons()).toEqual(['Resumed']);

    // Idle again: suspended again, a full idle timeout after the use that resumed it.
    w.calls.length = 0;
    w.now += IDLE_MS;
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)?.phase).toBe('Suspended');
    expect(w.calls.filter((c) => c !== 'getVM')).toEqual(['suspendVM']);
  });

  it('resumes after the save when the environment was used while it was being suspended', async () => {
    const w = new World();
    const r = w.reconciler();
    const key = await runningEnv(w, r, 'e', { idleAction: 'Suspend' });
    w.now += IDLE_MS;
    await r.reconcile(key); // SuspendVM started
    touch(w, key, w.now + 500); // a tool call arrives while the VM is being saved
    await reconcileUntilQuiet(w, r, key); // Suspended
    expect(w.status(key)?.phase).toBe('Suspended');
    await reconcileUntilQuiet(w, r, key); // the status update brings the key back: resumed
    expect(w.calls.filter((c) => c !== 'getVM')).toEqual(['suspendVM', 'resumeVM']);
    expect(w.status(key)?.phase).toBe('Running');
  });

  it.each<[string, Outcome<object>, { phase: string; reason: string; message: RegExp; retries: boolean }]>([
    [
      'the agent does not answer',
      { code: Code.Unavailable, message: 'connection refused' },
      {
        phase: 'Suspended',
        reason: 'Suspended',
        message: /^resuming the VM on n1 failed \(connection refused\); trying again$/,
        retries: true,
      },
    ],
    [
      'the node has no room for it now',
      { code: Code.ResourceExhausted, message: 'not enough free memory' },
      {
        phase: 'Suspended',
        reason: 'Suspended',
        message: /failed \(not enough free memory\); trying again$/,
        retries: true,
      },
    ],
    [
      'the saved VM is gone',
      { code: Code.NotFound },
      { phase: 'Failed', reason: 'VMFailed', message: /^the suspended VM is gone from n1$/, retries: false },
    ],
  ])('a resume that fails because %s', async (_case, outcome, want) => {
    const { w, r, key } = await suspendedEnv();
    w.resumeVM = outcome;
    touch(w, key);
    await r.reconcile(key);
    await drain();
    const result = await r.reconcile(key);
    expect(w.status(key)?.phase).toBe(want.phase);
    expect(w.condition(key, 'Ready')?.reason).toBe(want.reason);
    expect(w.status(key)?.message).toMatch(want.message);
    expect(w.calls).toEqual(['resumeVM']);
    if (!want.retries) return;
    expect(result?.requeueAfterMs).toBe(1_000);
    expect(w.events).toEqual([
      { type: 'Warning', reason: 'ResumeFailed', message: expect.stringMatching(want.message) },
    ]);
    await r.reconcile(key); // within the backoff: no second call
    expect(w.calls).toEqual(['resumeVM']);
    w.now += 1_000;
    w.resumeVM = { ok: { vm: {}, resumeMs: 700 } };
    await reconcileUntilQuiet(w, r, key);
    expect(w.calls).toEqual(['resumeVM', 'resumeVM']);
    expect(w.status(key)).toMatchObject({ phase: 'Running', lastResumeMs: 700 });
  });

  it('does not suspend or resume again from a cache that has not shown its own write yet', async () => {
    const w = new World();
    let lag: WaggleEnvironment | undefined; // what a lagging cache still shows
    const r = w.reconciler({ getEnv: (k) => lag ?? w.envs.get(k) });
    const key = await runningEnv(w, r, 'e', { idleAction: 'Suspend' });
    w.now += IDLE_MS;
    await r.reconcile(key); // marked suspending, SuspendVM started
    const marked = structuredClone(w.envs.get(key));
    await drain();
    await r.reconcile(key); // Suspended written
    expect(w.status(key)?.phase).toBe('Suspended');
    lag = marked;
    expect(await r.reconcile(key)).toBeUndefined();
    await drain();

    lag = undefined;
    touch(w, key);
    await r.reconcile(key); // ResumeVM started
    const resuming = structuredClone(w.envs.get(key));
    await drain();
    await r.reconcile(key); // Running written
    expect(w.status(key)?.phase).toBe('Running');
    lag = resuming;
    expect(await r.reconcile(key)).toBeUndefined();
    await drain();

    lag = undefined;
    await reconcileUntilQuiet(w, r, key);
    expect(w.calls.filter((c) => c !== 'getVM')).toEqual(['suspendVM', 'resumeVM']);
    expect(w.status(key)?.phase).toBe('Running');
  });

  it('a resume whose Running write conflicts is written on the next pass, without a second ResumeVM', async () => {
    const { w, r, key } = await suspendedEnv();
    touch(w, key);
    await r.reconcile(key); // ResumeVM started
    await drain();
    const write = w.store.updateStatus;
    w.store.updateStatus = async () => {
      w.store.updateStatus = write;
      throw Object.assign(new Error('conflict'), { code: 409 });
    };
    await expect(r.reconcile(key)).rejects.toMatchObject({ code: 409 });
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)).toMatchObject({ phase: 'Running', lastResumeMs: 420 });
    expect(w.calls.filter((c) => c !== 'getVM')).toEqual(['resumeVM']);
  });

  it('deletes a suspended environment at its maximum lifetime, destroying its VM', async () => {
    const { w, r, key } = await suspendedEnv();
    w.now = T0 + 24 * 3_600_000;
    await r.reconcile(key);
    expect(w.envs.get(key)?.metadata.deletionTimestamp).toBeDefined();
    expect(w.condition(key, 'Ready')?.message).toBe('expired: maximum lifetime 24h reached');
    await reconcileUntilQuiet(w, r, key);
    expect(w.envs.has(key)).toBe(false);
    expect(w.calls).toEqual(['destroyVM']);
    expect(w.reasons()).toEqual(['Expired', 'Terminating']);
  });

  it('a failed suspension leaves the VM running and ready, and is tried again after a backoff', async () => {
    const w = new World();
    const r = w.reconciler();
    const key = await runningEnv(w, r, 'e', { idleAction: 'Suspend' });
    w.suspendVM = { code: Code.Internal, message: 'no room on the state disk' };
    w.now += IDLE_MS;
    await r.reconcile(key);
    await drain();
    const result = await r.reconcile(key);
    expect(result?.requeueAfterMs).toBe(5_000);
    expect(w.status(key)?.phase).toBe('Running');
    expect(w.condition(key, 'Ready')).toMatchObject({ status: 'True', reason: 'Running' });
    expect(w.status(key)?.message).toMatch(
      /suspending it failed \(no room on the state disk\), trying again/,
    );
    expect(w.reasons()).toEqual(['SuspendFailed']);
    await reconcileUntilQuiet(w, r, key); // within the backoff: verified, not suspended
    expect(w.calls).toEqual(['suspendVM', 'getVM']);
    w.suspendVM = { ok: { vm: {}, stateBytes: 0n, suspendMs: 1 } };
    w.now += 5_000;
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)?.phase).toBe('Suspended');
  });

  it('a Running environment whose VM the node reports suspended is Suspended, not failed', async () => {
    const w = new World();
    const r = w.reconciler();
    const key = await runningEnv(w, r, 'e', { idleAction: 'Suspend' });
    w.getVM = { ok: { vm: { state: VMState.VM_STATE_SUSPENDED, suspendedAt: '2026-12-01T10:05:00Z' } } };
    w.now += 60_000;
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)).toMatchObject({ phase: 'Suspended', suspendedAt: '2026-12-01T10:05:00Z' });
    expect(w.condition(key, 'Ready')?.reason).toBe('Suspended');
    touch(w, key, w.now + 1_000);
    w.now += 1_000;
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)?.phase).toBe('Running');
  });

  it('on an unreachable node a suspended environment waits like any other, and says Suspended again after', async () => {
    const { w, r, key } = await suspendedEnv();
    w.silentMs.set('n1', CONFIG.nodeStaleAfterMs + 5_000);
    touch(w, key);
    await r.reconcile(key);
    expect(w.status(key)?.phase).toBe('Suspended');
    expect(w.condition(key, 'NodeReachable')?.status).toBe('False');
    expect(w.calls).toEqual([]);
    w.silentMs.set('n1', 0);
    await r.reconcile(key);
    expect(w.condition(key, 'Ready')).toMatchObject({ status: 'False', reason: 'Suspended' });
    await reconcileUntilQuiet(w, r, key); // the use while the node was away resumes it
    expect(w.status(key)?.phase).toBe('Running');
    expect(w.calls).toEqual(['resumeVM']);
  });
});

describe('the logs of a reconcile', () => {
  it('name the environment by envId (and vmId) and tell its node-agent calls the same envId', async () => {
    const w = new World();
    w.addNode('n1');
    const key = w.addEnv('e');
    const lines: Array<Record<string, unknown>> = [];
    const headers: Array<string | null> = [];
    const r = w.reconciler({
      log: pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) }),
      agents: {
        for: (endpoint, node) => {
          const a = w.agents.for(endpoint, node);
          const createVM = ((req, opts) => {
            headers.push(new Headers(opts?.headers).get(ENV_ID_HEADER));
            return a.createVM(req, opts);
          }) as VmAgent['createVM'];
          return { ...a, createVM };
        },
      },
    });
    await reconcileUntilQuiet(w, r, key);
    await reconcileUntilQuiet(w, r, key);
    expect(w.status(key)?.phase).toBe('Running');
    expect(headers).toEqual(['ns/e']);
    expect(
      lines.filter((l) => l.msg === 'environment phase changed').map((l) => [l.envId, l.vmId, l.phase]),
    ).toEqual([
      ['ns/e', 'uid-e', 'Scheduled'],
      ['ns/e', 'uid-e', 'Booting'],
      ['ns/e', 'uid-e', 'Running'],
    ]);
  });
});
