import { KubeConfig } from '@kubernetes/client-node';
import type { WaggleEnvironment, WaggleEnvironmentStatus } from '@waggle/crds';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Caller } from '../auth/caller.ts';
import { UserError } from '../errors.ts';
import type { ActivityRecorder } from './activity.ts';
import type { EnvironmentCache } from './environment-cache.ts';
import { EnvironmentService } from './environments.ts';

// resolveRunning against an in-memory cache: the operator's side is played by `set`.

const caller = { id: 'c', namespace: 'ns', principal: 'agent' } as Caller;
const ready = (status: 'True' | 'False', reason: string) => ({
  type: 'Ready',
  status,
  reason,
  message: '',
  lastTransitionTime: '2026-12-02T10:00:00Z',
});
const SUSPENDED: WaggleEnvironmentStatus = {
  phase: 'Suspended',
  nodeName: 'n1',
  vmId: 'uid-e',
  message: 'suspended on n1 after 30m idle; the next use resumes it',
  conditions: [ready('False', 'Suspended')],
};
const RUNNING: WaggleEnvironmentStatus = {
  phase: 'Running',
  nodeName: 'n1',
  vmId: 'uid-e',
  conditions: [ready('True', 'Running')],
};

/** A kubeconfig for an apiserver nobody runs: any call fails at once (ECONNREFUSED). */
function unreachableApiserver(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

function world(status: WaggleEnvironmentStatus, resumeWaitTimeoutMs = 1_000) {
  let env = {
    apiVersion: 'waggle.dev/v1alpha1',
    kind: 'WaggleEnvironment',
    metadata: { name: 'e', namespace: 'ns', resourceVersion: '1' },
    spec: { runtime: 'python', idleTimeout: '30m', idleAction: 'Suspend', maxLifetime: '24h' },
    status,
  } as unknown as WaggleEnvironment;
  const listeners = new Set<(type: 'update', e: WaggleEnvironment) => void>();
  const cache = {
    get: () => env,
    subscribe: (_ns: string, _name: string, l: (type: 'update', e: WaggleEnvironment) => void) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  } as unknown as EnvironmentCache;
  const touched: string[] = [];
  const activity = {
    touchNow: async (ns: string, name: string) => {
      touched.push(`${ns}/${name}`);
    },
  } as unknown as ActivityRecorder;
  // Never contacted: resolveRunning reads the cache and records activity through `activity`.
  const kc = unreachableApiserver();
  const service = new EnvironmentService(
    kc,
    cache,
    activity,
    {
      maxPerCaller: 10,
      createWaitTimeoutMs: 1_000,
      unschedulableGraceMs: 1_000,
      resumeWaitTimeoutMs,
      idleTimeoutMinutes: 30,
      maxLifetimeMs: 86_400_000,
    },
    pino({ level: 'silent' }),
  );
  /** The operator writes a new status; the watch delivers it. */
  const set = (next: WaggleEnvironmentStatus) => {
    env = { ...env, status: next };
    for (const l of listeners) l('update', env);
  };
  return { service, set, touched, listeners };
}

describe('EnvironmentService.resolveRunning', () => {
  it('returns a running environment at once, recording nothing and reporting no resume', async () => {
    const w = world(RUNNING);
    const resumed: number[] = [];
    const env = await w.service.resolveRunning(caller, 'e', { onResumed: (ms) => resumed.push(ms) });
    expect(env.status?.phase).toBe('Running');
    expect(w.touched).toEqual([]);
    expect(resumed).toEqual([]);
  });

  it.each<[string, WaggleEnvironmentStatus]>([
    ['suspended', SUSPENDED],
    [
      'being suspended (Running, Ready=False Suspended)',
      { ...RUNNING, conditions: [ready('False', 'Suspended')] },
    ],
  ])('records activity at once for an environment %s and waits for Running', async (_case, status) => {
    const w = world(status);
    const resumed: number[] = [];
    const pending = w.service.resolveRunning(caller, 'e', { onResumed: (ms) => resumed.push(ms) });
    await new Promise((r) => setTimeout(r, 20));
    expect(w.touched).toEqual(['ns/e']);
    w.set({ ...SUSPENDED, message: 'resuming the VM on n1' }); // still not running
    await new Promise((r) => setTimeout(r, 20));
    expect(resumed).toEqual([]);
    w.set(RUNNING);
    const env = await pending;
    expect(env.status?.phase).toBe('Running');
    expect(resumed).toEqual([expect.any(Number)]);
    expect(w.listeners.size).toBe(0); // unsubscribed
  });

  it('resumes a suspended environment for preview traffic (resumed), and passes a running one through', async () => {
    const w = world(SUSPENDED);
    const suspended = w.service.get(caller, 'e');
    const pending = w.service.resumed(suspended);
    await new Promise((r) => setTimeout(r, 20));
    expect(w.touched).toEqual(['ns/e']);
    w.set(RUNNING);
    expect((await pending).status?.phase).toBe('Running');
    const running = await w.service.resumed(w.service.get(caller, 'e'));
    expect(running.status?.phase).toBe('Running');
    expect(w.touched).toEqual(['ns/e']);
  });

  it('gives up after the resume wait with the operator’s message, as a user error', async () => {
    const w = world(SUSPENDED, 100);
    const pending = w.service.resolveRunning(caller, 'e');
    await new Promise((r) => setTimeout(r, 20));
    w.set({ ...SUSPENDED, message: 'resuming the VM on n1 failed (connection refused); trying again' });
    const err = await pending.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err).toMatchObject({
      code: 'environment_suspended',
      message: expect.stringMatching(
        /^environment "e" is suspended and did not resume within 100 ms: resuming the VM on n1 failed \(connection refused\); trying again\./,
      ),
    });
    expect(w.listeners.size).toBe(0);
  });

  it('fails at once when the resume fails for good, and stops on cancellation', async () => {
    const w = world(SUSPENDED);
    const failing = w.service.resolveRunning(caller, 'e');
    await new Promise((r) => setTimeout(r, 20));
    w.set({ phase: 'Failed', message: 'the suspended VM is gone from n1' });
    await expect(failing).rejects.toMatchObject({
      code: 'environment_not_running',
      message: expect.stringMatching(/is Failed, not Running \(the suspended VM is gone from n1\)/),
    });

    const c = world(SUSPENDED);
    const abort = new AbortController();
    const cancelled = c.service.resolveRunning(caller, 'e', { signal: abort.signal });
    await new Promise((r) => setTimeout(r, 20));
    abort.abort();
    await expect(cancelled).rejects.toMatchObject({
      message: expect.stringMatching(/is Suspended, not Running \(the call ended while it was resuming\)/),
    });
  });
});

describe('EnvironmentService.create: the per-caller limit', () => {
  it('reserves a slot before the apiserver write: concurrent creates cannot pass the limit together, and a failed write gives the slot back', async () => {
    const cache = { list: () => [] } as unknown as EnvironmentCache;
    // Every write fails, after the synchronous part of create().
    const kc = unreachableApiserver();
    const service = new EnvironmentService(
      kc,
      cache,
      {} as ActivityRecorder,
      {
        maxPerCaller: 3,
        createWaitTimeoutMs: 1_000,
        unschedulableGraceMs: 1_000,
        resumeWaitTimeoutMs: 1_000,
        idleTimeoutMinutes: 30,
        maxLifetimeMs: 86_400_000,
      },
      pino({ level: 'silent' }),
    );
    const settle = (p: Promise<unknown>) =>
      p.then(
        () => 'created',
        (err: Error) => err.constructor.name,
      );
    const four = await Promise.all(
      [0, 1, 2, 3].map(() => settle(service.create(caller, { runtime: 'python' }))),
    );
    expect(four.filter((r) => r === 'LimitReachedError')).toHaveLength(1);
    expect(four.filter((r) => r !== 'LimitReachedError' && r !== 'created')).toHaveLength(3);
    // The three failed writes released their slots: the next create is tried, not refused.
    expect(await settle(service.create(caller, { runtime: 'python' }))).not.toBe('LimitReachedError');
  });
});
