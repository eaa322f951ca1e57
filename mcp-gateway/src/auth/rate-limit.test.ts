import { describe, expect, it } from 'vitest';
import { ConcurrencyLimiter, KeyedBuckets, TokenBucket } from './rate-limit.ts';

describe('TokenBucket', () => {
  it('allows a burst, then refills at its rate', () => {
    const b = new TokenBucket(3, 1, 0);
    expect([b.take(0), b.take(0), b.take(0), b.take(0)]).toEqual([true, true, true, false]);
    expect(b.retryAfterMs(0)).toBe(1000);
    expect(b.take(999)).toBe(false);
    expect(b.take(1000)).toBe(true);
    expect(b.full(10_000)).toBe(true);
  });

  it('goes into debt when charged for failures that happened anyway', () => {
    const b = new TokenBucket(2, 1, 0);
    for (let i = 0; i < 4; i++) b.charge(0);
    expect(b.has(0)).toBe(false);
    expect(b.retryAfterMs(0)).toBe(3000);
    expect(b.has(3000)).toBe(true);
  });
});

describe('KeyedBuckets', () => {
  it('limits each key on its own and forgets the oldest keys beyond its size', () => {
    const k = new KeyedBuckets({ burst: 2, perSecond: 1, maxKeys: 2 });
    expect(k.has('a', 0)).toBe(true);
    k.charge('a', 0);
    k.charge('a', 0);
    expect(k.has('a', 0)).toBe(false);
    expect(k.has('b', 0)).toBe(true);
    expect(k.retryAfterMs('a', 500)).toBe(500);
    k.charge('b', 0);
    k.charge('c', 0); // evicts a (the oldest; none is full again yet)
    expect(k.size).toBe(2);
    expect(k.has('a', 0)).toBe(true);
  });

  it('takes up front and refunds what did not count', () => {
    const k = new KeyedBuckets({ burst: 2, perSecond: 1 });
    expect([k.take('a', 0), k.take('a', 0), k.take('a', 0)]).toEqual([true, true, false]);
    k.refund('a', 0);
    expect(k.take('a', 0)).toBe(true);
    expect(k.take('b', 0)).toBe(true);
  });
});

describe('ConcurrencyLimiter', () => {
  it('counts per key up to max; release is idempotent', () => {
    const l = new ConcurrencyLimiter(2);
    const r1 = l.tryAcquire('x');
    const r2 = l.tryAcquire('x');
    expect(r1 && r2).toBeTruthy();
    expect(l.tryAcquire('x')).toBeUndefined();
    expect(l.tryAcquire('y')).toBeDefined();
    r1?.();
    r1?.();
    expect(l.active('x')).toBe(1);
    expect(l.tryAcquire('x')).toBeDefined();
    expect(l.tryAcquire('x')).toBeUndefined();
  });
});
