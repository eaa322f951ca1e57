import type { WaggleEnvironment } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { CreateLatency } from './create-latency.ts';

const env = (status?: Partial<NonNullable<WaggleEnvironment['status']>>, uid = 'u1') =>
  ({ metadata: { uid, name: 'e', namespace: 'n' }, status }) as unknown as WaggleEnvironment;

describe('CreateLatency', () => {
  it('times an environment from its first event to the one that says it started, by createdFrom', () => {
    let now = 1_000;
    const seen: Array<[string, number]> = [];
    const t = new CreateLatency(
      (path, s) => seen.push([path, s]),
      () => now,
    );
    t.changed('add', env());
    now += 40;
    t.changed('update', env({ phase: 'Scheduled' }));
    now += 10;
    t.changed('update', env({ phase: 'Running', startedAt: '2026-01-01T00:00:00Z', createdFrom: 'warm' }));
    t.changed('update', env({ phase: 'Running', startedAt: '2026-01-01T00:00:00Z', createdFrom: 'warm' }));
    expect(seen).toEqual([['warm', 0.05]]);
    expect(t.pending).toBe(0);
  });

  it('does not time what it first saw started, and forgets deleted environments', () => {
    const seen: unknown[] = [];
    const t = new CreateLatency(
      (...a) => seen.push(a),
      () => 0,
    );
    t.changed('add', env({ startedAt: '2026-01-01T00:00:00Z', createdFrom: 'cold' }, 'old'));
    t.changed('add', env({ phase: 'Pending' }, 'gone'));
    t.changed('delete', env({ phase: 'Pending' }, 'gone'));
    expect(seen).toEqual([]);
    expect(t.pending).toBe(0);
  });
});
