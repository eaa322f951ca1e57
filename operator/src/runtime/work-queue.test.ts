import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WorkQueue } from './work-queue.ts';

describe('WorkQueue', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('collapses duplicate keys while they wait', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('never hands a key to two workers; an add during processing re-queues it once on done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const first = await q.get();
    q.add('a');
    q.add('a');
    expect(q.length).toBe(0); // held back while 'a' is processed
    let second: string | undefined;
    void q.get().then((k) => {
      second = k;
    });
    await Promise.resolve();
    expect(second).toBeUndefined();
    q.done(first as string);
    await Promise.resolve();
    expect(second).toBe('a');
    q.done('a');
    expect(q.length).toBe(0);
  });

  it('wakes a waiting worker when a key arrives', async () => {
    const q = new WorkQueue();
    const got = q.get();
    q.add('x');
    expect(await got).toBe('x');
  });

  it('backs off exponentially per key and forgets on success', () => {
    const q = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 50 });
    expect(q.addRateLimited('k')).toBe(10);
    expect(q.addRateLimited('k')).toBe(20);
    expect(q.addRateLimited('k')).toBe(40);
    expect(q.addRateLimited('k')).toBe(50);
    expect(q.failures('k')).toBe(4);
    q.forget('k');
    expect(q.addRateLimited('k')).toBe(10);
  });

  it('adds after a delay, keeping the earliest schedule', async () => {
    const q = new WorkQueue();
    q.addAfter('t', 1_000);
    q.addAfter('t', 5_000); // later: ignored
    q.addAfter('t', 200); // earlier: wins
    vi.advanceTimersByTime(199);
    expect(q.length).toBe(0);
    vi.advanceTimersByTime(1);
    expect(q.length).toBe(1);
    vi.advanceTimersByTime(10_000);
    expect(q.length).toBe(1); // the replaced timers never fire
  });

  it('releases waiting workers on shutdown and ignores later adds', async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.addAfter('later', 100);
    q.shutdown();
    expect(await waiting).toBeUndefined();
    q.add('x');
    vi.advanceTimersByTime(1_000);
    expect(q.length).toBe(0);
    expect(await q.get()).toBeUndefined();
  });
});
