import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Controller, describeError, TerminalError } from './controller.ts';

const log = pino({ level: 'silent' });
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe('Controller', () => {
  it('never reconciles the same key concurrently and collapses events that arrive meanwhile', async () => {
    let running = 0;
    let maxConcurrent = 0;
    let calls = 0;
    const c = new Controller({
      name: 't',
      log,
      workers: 4,
      reconcile: async () => {
        calls++;
        running++;
        maxConcurrent = Math.max(maxConcurrent, running);
        await tick(20);
        running--;
        return undefined;
      },
    });
    c.start();
    c.enqueue('a');
    await tick(5);
    for (let i = 0; i < 10; i++) c.enqueue('a'); // during processing: one re-run
    await tick(80);
    expect(maxConcurrent).toBe(1);
    expect(calls).toBe(2);
    await c.stop();
  });

  it('retries failures with backoff and stops on a terminal error', async () => {
    const seen: string[] = [];
    let attempts = 0;
    const c = new Controller({
      name: 't',
      log,
      baseDelayMs: 5,
      reconcile: async (key) => {
        seen.push(key);
        if (key === 'flaky' && ++attempts < 3) throw new Error('transient');
        if (key === 'broken') throw new TerminalError('cannot fix');
        return undefined;
      },
    });
    c.start();
    c.enqueue('flaky');
    c.enqueue('broken');
    await tick(100);
    expect(seen.filter((k) => k === 'flaky')).toHaveLength(3);
    expect(seen.filter((k) => k === 'broken')).toHaveLength(1);
    expect(c.queue.failures('flaky')).toBe(0);
    await c.stop();
  });

  it('logs a failed reconcile with its key under the field the controller names', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const c = new Controller({
      name: 'waggleenvironment',
      log: pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) }),
      logKey: 'envId',
      reconcile: async () => {
        throw new TerminalError('cannot fix');
      },
    });
    c.start();
    c.enqueue('team-a/env-1');
    await tick(20);
    await c.stop();
    expect(lines).toEqual([
      expect.objectContaining({ msg: 'reconcile failed permanently', envId: 'team-a/env-1' }),
    ]);
    expect(lines[0]).not.toHaveProperty('key');
  });

  it('requeues after the requested delay', async () => {
    const times: number[] = [];
    const c = new Controller({
      name: 't',
      log,
      reconcile: async () => {
        times.push(Date.now());
        return times.length < 2 ? { requeueAfterMs: 50 } : undefined;
      },
    });
    c.start();
    c.enqueue('timer');
    await tick(120);
    expect(times).toHaveLength(2);
    expect((times[1] as number) - (times[0] as number)).toBeGreaterThanOrEqual(45);
    await c.stop();
  });

  it('stops gracefully: in-flight work sees an aborted signal and finishes', async () => {
    let sawAbort = false;
    const c = new Controller({
      name: 't',
      log,
      reconcile: async (_key, signal) => {
        await tick(30);
        sawAbort = signal.aborted;
        return undefined;
      },
    });
    c.start();
    c.enqueue('x');
    await tick(5);
    await c.stop();
    expect(sawAbort).toBe(true);
  });
});

describe('describeError', () => {
  it("gives an ApiException's code and the apiserver's message, not its body and headers", async () => {
    const { ApiException } = await import('@kubernetes/client-node');
    const body = JSON.stringify({ kind: 'Status', message: 'the object has been modified', code: 409 });
    const e = new ApiException(409, 'Unknown API Status Code!', body, { 'audit-id': 'x' });
    expect(describeError(e)).toEqual({ code: 409, message: 'HTTP 409: the object has been modified' });
    expect(describeError(new Error('boom'))).toEqual({ message: 'boom' });
  });
});
