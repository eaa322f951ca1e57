import { describe, expect, it } from 'vitest';
import { RetryBackoff } from './retry-backoff.ts';

describe('RetryBackoff', () => {
  it('doubles the wait after each failure up to the cap, and a success clears it', () => {
    const b = new RetryBackoff({ baseMs: 1_000, maxMs: 5_000 });
    expect(b.waitMs('k', 0)).toBe(0);
    expect(b.failing('k')).toBe(false);
    expect([1, 2, 3, 4].map(() => b.failed('k', 0))).toEqual([1_000, 2_000, 4_000, 5_000]);
    expect(b.waitMs('k', 1_000)).toBe(4_000);
    expect(b.waitMs('k', 9_000)).toBe(0);
    expect(b.failing('k')).toBe(true);
    expect(b.waitMs('other', 0)).toBe(0);
    b.clear('k');
    expect(b.failing('k')).toBe(false);
    expect(b.failed('k', 0)).toBe(1_000);
  });
});
