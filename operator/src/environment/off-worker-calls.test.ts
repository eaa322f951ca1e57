import { describe, expect, it } from 'vitest';
import { OffWorkerCalls } from './off-worker-calls.ts';

const deferred = <T>() => {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};
const tick = () => new Promise((r) => setImmediate(r));

describe('OffWorkerCalls', () => {
  it('starts one call per key, reports pending, then hands the result over once', async () => {
    const calls = new OffWorkerCalls<string>();
    const d = deferred<string>();
    let started = 0;
    let settled = 0;
    const start = () => {
      started++;
      return d.promise;
    };
    expect(calls.take('k', start, () => settled++)).toEqual({ state: 'started' });
    expect(calls.take('k', start, () => settled++)).toEqual({ state: 'pending' });
    await tick();
    expect(started).toBe(1);
    expect(calls.inFlight('k')).toBe(true);
    d.resolve('vm');
    await tick();
    expect(settled).toBe(1);
    expect(calls.take('k', start, () => settled++)).toEqual({ state: 'done', value: 'vm' });
    // Taken: the next take starts a new call.
    expect(calls.take('k', start, () => settled++)).toEqual({ state: 'started' });
    await tick();
    expect(started).toBe(2);
  });

  it('reports failures and drops the result of a forgotten call', async () => {
    const calls = new OffWorkerCalls<string>();
    const d = deferred<string>();
    calls.take(
      'k',
      () => d.promise,
      () => undefined,
    );
    d.reject(new Error('deadline exceeded'));
    await tick();
    const r = calls.take(
      'k',
      () => d.promise,
      () => undefined,
    );
    expect(r.state).toBe('failed');
    expect((r as { error: Error }).error.message).toBe('deadline exceeded');

    const late = deferred<string>();
    calls.take(
      'j',
      () => late.promise,
      () => undefined,
    );
    calls.forget('j');
    late.resolve('stale');
    await tick();
    expect(calls.inFlight('j')).toBe(false);
    const fresh = deferred<string>();
    expect(
      calls.take(
        'j',
        () => fresh.promise,
        () => undefined,
      ),
    ).toEqual({ state: 'started' });
  });

  it('gives a restored result to the next take instead of calling again', () => {
    const calls = new OffWorkerCalls<string>();
    let started = 0;
    const start = async () => {
      started++;
      return 'again';
    };
    calls.restore('k', { state: 'done', value: 'vm' });
    expect(calls.take('k', start, () => undefined)).toEqual({ state: 'done', value: 'vm' });
    expect(calls.take('k', start, () => undefined)).toEqual({ state: 'started' });
    // A call registered meanwhile wins over a late restore.
    calls.restore('k', { state: 'done', value: 'old' });
    expect(calls.inFlight('k')).toBe(true);
    expect(started).toBe(0); // the started call runs after this tick
  });

  it('wait: returns the result once the call ends, or pending after the time, or nothing', async () => {
    const calls = new OffWorkerCalls<string>();
    expect(await calls.wait('none', 10)).toBeUndefined();
    const slow = deferred<string>();
    calls.take(
      'w',
      () => slow.promise,
      () => undefined,
    );
    const t = performance.now();
    expect(await calls.wait('w', 30)).toEqual({ state: 'pending' });
    expect(performance.now() - t).toBeGreaterThanOrEqual(25);
    setTimeout(() => slow.resolve('vm'), 5);
    expect(await calls.wait('w', 5_000)).toEqual({ state: 'done', value: 'vm' });
    // Taken: the next take starts a new call.
    expect(calls.inFlight('w')).toBe(false);
    expect(
      calls.take(
        'w',
        async () => 'again',
        () => undefined,
      ),
    ).toEqual({ state: 'started' });
  });

  it('tagOf: says what the last call was made against until forget, across taking its result', async () => {
    const calls = new OffWorkerCalls<string>();
    calls.take(
      't',
      async () => 'vm',
      () => undefined,
      'node-a',
    );
    expect(calls.tagOf('t')).toBe('node-a');
    expect(await calls.wait('t', 1_000)).toEqual({ state: 'done', value: 'vm' });
    expect(calls.tagOf('t')).toBe('node-a'); // the VM it made is still there
    calls.take(
      't',
      async () => 'again',
      () => undefined,
    ); // a call without a tag clears it
    expect(calls.tagOf('t')).toBeUndefined();
    calls.take(
      'u',
      async () => 'x',
      () => undefined,
      'node-b',
    );
    calls.forget('u');
    expect(calls.tagOf('u')).toBeUndefined();
  });
});
