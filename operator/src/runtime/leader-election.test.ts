import { KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { LeaderElector, type LeaseApi } from './leader-election.ts';

const log = pino({ level: 'silent' });
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An in-memory Lease whose writes can be made to hang (an apiserver that stops answering). */
function fakeLeaseApi() {
  let lease: V1Lease | undefined;
  let rv = 0;
  const state = { hang: false };
  const never = new Promise<never>(() => undefined);
  const api: LeaseApi = {
    readNamespacedLease: async () => {
      if (state.hang) return never;
      if (!lease) throw Object.assign(new Error('not found'), { code: 404 });
      return structuredClone(lease);
    },
    createNamespacedLease: async ({ body }) => {
      lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      return lease;
    },
    replaceNamespacedLease: async ({ body }) => {
      if (state.hang) return never;
      lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      return lease;
    },
  } as LeaseApi;
  return { api, state };
}

describe('LeaderElector', () => {
  it('stops leading within the renew deadline when lease calls hang instead of failing', async () => {
    const { api, state } = fakeLeaseApi();
    const events: Array<[string, number]> = [];
    const t0 = Date.now();
    const e = new LeaderElector({
      kc: new KubeConfig(),
      api,
      namespace: 'ns',
      name: 'lease',
      identity: 'a',
      leaseDurationMs: 1_500,
      renewDeadlineMs: 600,
      retryPeriodMs: 100,
      onStartedLeading: () => events.push(['started', Date.now() - t0]),
      onStoppedLeading: () => events.push(['stopped', Date.now() - t0]),
      log,
    });
    e.start();
    await tick(300);
    expect(e.isLeader).toBe(true);
    const hungAt = Date.now() - t0;
    state.hang = true; // every call from now on never returns
    await tick(1_200);
    expect(e.isLeader).toBe(false);
    const stopped = events.find(([what]) => what === 'stopped');
    expect(stopped, 'onStoppedLeading was not called while the apiserver hung').toBeDefined();
    // The last successful renew was at most one retry period before the hang began.
    expect((stopped?.[1] ?? 0) - hungAt).toBeLessThanOrEqual(600 + 150);
    await e.stop();
  });
});
