import { describe, expect, it } from 'vitest';
import { CallDrain } from './call-drain.ts';

describe('CallDrain', () => {
  it('lets running calls finish within the grace, refuses new ones meanwhile', async () => {
    const drain = new CallDrain();
    const call = drain.enter(new AbortController().signal);
    expect(call).toBeDefined();
    const t0 = Date.now();
    const drained = drain.drain(5_000, 1_000);
    expect(drain.enter(new AbortController().signal)).toBeUndefined();
    setTimeout(() => call?.leave(), 100);
    expect(await drained).toEqual({ finished: 1, interrupted: 0 });
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(call?.signal.aborted).toBe(false);
  });

  it('aborts calls still running after the grace and waits for their answers', async () => {
    const drain = new CallDrain();
    const call = drain.enter(new AbortController().signal);
    let answered = false;
    call?.signal.addEventListener('abort', () =>
      setTimeout(() => {
        answered = true;
        call.leave();
      }, 50),
    );
    expect(await drain.drain(100, 2_000)).toEqual({ finished: 0, interrupted: 1 });
    expect(answered).toBe(true);
    expect(call?.interrupted()).toBe(true);
  });

  it('passes the caller’s own cancellation through, and is not interrupted by it', () => {
    const drain = new CallDrain();
    const caller = new AbortController();
    const call = drain.enter(caller.signal);
    caller.abort();
    expect(call?.signal.aborted).toBe(true);
    expect(call?.interrupted()).toBe(false);
  });
});
