import { describe, expect, it } from 'vitest';
import { deadlines, k8sTime, MAX_ACTIVITY_CLOCK_SKEW_MS } from './expiry.ts';
import type { WaggleEnvironment } from './index.ts';
import { LAST_ACTIVITY_ANNOTATION } from './index.ts';

const env = (
  over: {
    spec?: Partial<WaggleEnvironment['spec']>;
    annotations?: Record<string, string>;
    status?: WaggleEnvironment['status'];
  } = {},
): WaggleEnvironment => ({
  apiVersion: 'waggle.dev/v1alpha1',
  kind: 'WaggleEnvironment',
  metadata: {
    name: 'e',
    namespace: 'n',
    creationTimestamp: '2026-11-24T10:00:00Z',
    annotations: over.annotations ?? {},
  },
  spec: {
    runtime: 'python',
    resources: { cpus: 1, memoryMiB: 512, diskMiB: 2048 },
    idleTimeout: '30m',
    idleAction: 'Delete',
    network: { egress: 'all' },
    ...over.spec,
  },
  ...(over.status ? { status: over.status } : {}),
});

describe('deadlines', () => {
  it('counts idle time from creation when never used', () => {
    const d = deadlines(env());
    expect(k8sTime(d.expiresAt)).toBe('2026-11-24T10:30:00Z');
    expect(d.reason).toBe('IdleTimeout');
  });

  it('uses the latest of the activity annotation, status activity and start', () => {
    const d = deadlines(
      env({
        annotations: { [LAST_ACTIVITY_ANNOTATION]: '2026-11-24T11:00:00Z' },
        status: { lastActivityTime: '2026-11-24T10:45:00Z', startedAt: '2026-11-24T10:00:10Z' },
      }),
    );
    expect(k8sTime(d.lastActivity)).toBe('2026-11-24T11:00:00Z');
    expect(k8sTime(d.expiresAt)).toBe('2026-11-24T11:30:00Z');
  });

  it('caps by maxLifetime from creation, however active', () => {
    const d = deadlines(
      env({
        spec: { maxLifetime: '1h' },
        annotations: { [LAST_ACTIVITY_ANNOTATION]: '2026-11-24T10:50:00Z' },
      }),
    );
    expect(k8sTime(d.expiresAt)).toBe('2026-11-24T11:00:00Z');
    expect(d.reason).toBe('MaxLifetime');
  });

  it('ignores a malformed activity annotation', () => {
    expect(
      k8sTime(deadlines(env({ annotations: { [LAST_ACTIVITY_ANNOTATION]: 'yesterday' } })).expiresAt),
    ).toBe('2026-11-24T10:30:00Z');
  });

  describe('idleAction Suspend (with maxLifetime 2h)', () => {
    const suspend = (phase: string | undefined, over: { maxLifetime?: string } = {}) =>
      env({
        spec: { idleAction: 'Suspend', maxLifetime: '2h', ...over },
        ...(phase ? { status: { phase } as WaggleEnvironment['status'] } : {}),
      });

    it('suspends a running VM at the idle deadline; only the lifetime deletes', () => {
      const d = deadlines(suspend('Running'));
      expect(k8sTime(d.suspendAt as Date)).toBe('2026-11-24T10:30:00Z');
      expect(k8sTime(d.expiresAt)).toBe('2026-11-24T12:00:00Z');
      expect(d.reason).toBe('MaxLifetime');
    });

    it('expires a suspended environment at its maxLifetime only, however long idle', () => {
      const d = deadlines(suspend('Suspended'), Date.parse('2026-11-24T11:59:00Z'));
      expect(d.suspendAt).toBeUndefined();
      expect(k8sTime(d.expiresAt)).toBe('2026-11-24T12:00:00Z');
      expect(d.reason).toBe('MaxLifetime');
    });

    it('counts the idle time from the resume: a resume slower than the idle timeout is not suspended again at once', () => {
      const resumed = env({
        spec: { idleAction: 'Suspend', maxLifetime: '2h', idleTimeout: '5s' },
        annotations: { [LAST_ACTIVITY_ANNOTATION]: '2026-11-24T10:40:00Z' }, // the call that resumed it
        status: { phase: 'Running', resumedAt: '2026-11-24T10:40:07Z' } as WaggleEnvironment['status'],
      });
      const d = deadlines(resumed, Date.parse('2026-11-24T10:40:08Z'));
      expect(k8sTime(d.lastActivity)).toBe('2026-11-24T10:40:07Z');
      expect(k8sTime(d.suspendAt as Date)).toBe('2026-11-24T10:40:12Z');
    });

    it('does not suspend when the lifetime comes first', () => {
      const d = deadlines(suspend('Running', { maxLifetime: '20m' }));
      expect(d.suspendAt).toBeUndefined();
      expect(k8sTime(d.expiresAt)).toBe('2026-11-24T10:20:00Z');
    });

    it.each([['Pending'], ['Booting'], ['Failed'], [undefined]])(
      'deletes at the idle deadline while %s (no VM to suspend)',
      (phase) => {
        const d = deadlines(suspend(phase));
        expect(d.suspendAt).toBeUndefined();
        expect(k8sTime(d.expiresAt)).toBe('2026-11-24T10:30:00Z');
        expect(d.reason).toBe('IdleTimeout');
      },
    );

    it('idleAction Delete is unchanged: the idle deadline deletes a running environment', () => {
      const d = deadlines(
        env({ spec: { idleAction: 'Delete', maxLifetime: '2h' }, status: { phase: 'Running' } }),
      );
      expect(d.suspendAt).toBeUndefined();
      expect(k8sTime(d.expiresAt)).toBe('2026-11-24T10:30:00Z');
      expect(d.reason).toBe('IdleTimeout');
    });
  });

  describe('an activity time in the future (a forged annotation, a writer with a fast clock)', () => {
    const now = Date.parse('2026-11-24T10:10:00Z');

    it('is not believed at all when far ahead: 2099 does not keep the environment alive', () => {
      const d = deadlines(
        env({
          spec: {},
          annotations: { [LAST_ACTIVITY_ANNOTATION]: '2099-01-01T00:00:00Z' },
          status: { lastActivityTime: '2099-01-01T00:00:00Z', startedAt: '2026-11-24T10:00:10Z' },
        }),
        now,
      );
      expect(k8sTime(d.lastActivity)).toBe('2026-11-24T10:00:10Z');
      expect(k8sTime(d.expiresAt)).toBe('2026-11-24T10:30:10Z');
    });

    it('counts as now, never later, when within the clock-skew allowance', () => {
      const ahead = k8sTime(new Date(now + MAX_ACTIVITY_CLOCK_SKEW_MS - 1_000));
      const d = deadlines(env({ annotations: { [LAST_ACTIVITY_ANNOTATION]: ahead } }), now);
      expect(d.lastActivity.getTime()).toBe(now);
      expect(k8sTime(d.expiresAt)).toBe('2026-11-24T10:40:00Z');
      // The observer accepts Date as well as epoch milliseconds.
      expect(deadlines(env({ annotations: { [LAST_ACTIVITY_ANNOTATION]: ahead } }), new Date(now))).toEqual(
        d,
      );
    });

    it("is believed once the observer's clock has passed it", () => {
      const later = Date.parse('2026-11-24T12:00:00Z');
      const d = deadlines(
        env({ annotations: { [LAST_ACTIVITY_ANNOTATION]: '2026-11-24T11:50:00Z' } }),
        later,
      );
      expect(k8sTime(d.expiresAt)).toBe('2026-11-24T12:20:00Z');
    });
  });
});
