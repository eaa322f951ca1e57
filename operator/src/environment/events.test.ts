import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EventRecorder, MAX_PENDING_EVENTS } from './events.ts';

// The recorder against a loopback HTTP server standing in for the apiserver's events endpoint:
// record() must not wait for the write, events arrive in order, flush() waits for them.

const OBJ = {
  apiVersion: 'waggle.dev/v1alpha1',
  kind: 'WaggleEnvironment',
  metadata: { name: 'env-a', namespace: 'team', uid: 'u1' },
};

const body = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let s = '';
    req.on('data', (d: Buffer) => {
      s += d.toString('utf8');
    });
    req.on('end', () => resolve(s));
  });

async function fakeApiserver(answerAfterMs: number) {
  const received: Array<{ path: string; reason: string }> = [];
  let release: () => void = () => undefined;
  let gate = answerAfterMs > 0 ? new Promise<void>((r) => (release = r)) : Promise.resolve();
  const server = createServer(async (req, res) => {
    const ev = JSON.parse(await body(req)) as { reason: string };
    await gate;
    received.push({ path: req.url ?? '', reason: ev.reason });
    res.writeHead(ev.reason === 'Refused' ? 500 : 201, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Event', metadata: { name: 'x' } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 'c',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return {
    kc,
    received,
    open: () => {
      release();
      gate = Promise.resolve();
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

let stop: (() => Promise<unknown>) | undefined;
afterEach(async () => {
  await stop?.();
  stop = undefined;
});

describe('EventRecorder', () => {
  it('returns before the apiserver answers, sends in order, and flush waits for the queue', async () => {
    const api = await fakeApiserver(1);
    stop = api.close;
    const rec = new EventRecorder(api.kc, { component: 'c', instance: 'i', log: pino({ level: 'silent' }) });
    const t = performance.now();
    await rec.record(OBJ, 'Normal', 'Scheduled', 'assigned');
    await rec.record(OBJ, 'Warning', 'Refused', 'a failure is logged, not thrown');
    await rec.record(OBJ, 'Normal', 'Running', 'ready');
    expect(performance.now() - t).toBeLessThan(50);
    expect(api.received).toEqual([]); // the apiserver has not answered one yet
    api.open();
    await rec.flush();
    expect(api.received.map((r) => r.reason)).toEqual(['Scheduled', 'Refused', 'Running']);
    expect(api.received[0]?.path).toBe('/api/v1/namespaces/team/events');
  });

  it('logs an event it could not record with the environment’s envId', async () => {
    const api = await fakeApiserver(0);
    stop = api.close;
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    const rec = new EventRecorder(api.kc, { component: 'c', instance: 'i', log });
    await rec.record(OBJ, 'Warning', 'Refused', 'the apiserver answers 500');
    await rec.flush();
    expect(lines).toEqual([
      expect.objectContaining({ msg: 'could not record event', reason: 'Refused', envId: 'team/env-a' }),
    ]);
  });

  it('drops events beyond the bound instead of growing without end', async () => {
    const api = await fakeApiserver(1);
    stop = api.close;
    const rec = new EventRecorder(api.kc, { component: 'c', instance: 'i', log: pino({ level: 'silent' }) });
    for (let i = 0; i < MAX_PENDING_EVENTS + 50; i++) await rec.record(OBJ, 'Normal', 'Scheduled', `n${i}`);
    api.open();
    await rec.flush(30_000);
    // One is in flight when the queue fills, so at most the bound plus that one arrive.
    expect(api.received.length).toBeGreaterThanOrEqual(MAX_PENDING_EVENTS);
    expect(api.received.length).toBeLessThanOrEqual(MAX_PENDING_EVENTS + 1);
  }, 60_000);
});
