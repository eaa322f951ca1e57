import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { LAST_ACTIVITY_ANNOTATION } from '@waggle/crds';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActivityRecorder } from './activity.ts';

// A stand-in apiserver on loopback that records the merge patches it receives.
const patches: Array<{ url: string; annotation: string }> = [];
let server: Server;
let kc: KubeConfig;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      const annotation = JSON.parse(body || '{}')?.metadata?.annotations?.[LAST_ACTIVITY_ANNOTATION];
      patches.push({ url: req.url ?? '', annotation });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const settle = () => new Promise((r) => setTimeout(r, 300));

describe('ActivityRecorder', () => {
  it('writes the annotation at most once per interval per environment', async () => {
    patches.length = 0;
    const rec = new ActivityRecorder(kc, { intervalMs: 30_000, log: pino({ level: 'silent' }) });
    const t0 = Date.parse('2026-12-01T10:00:00Z');
    for (let i = 0; i < 20; i++) rec.touch('ns', 'env-a', undefined, t0 + i * 1_000); // 20 calls in 19 s
    rec.touch('ns', 'env-b', undefined, t0);
    rec.touch('ns', 'env-a', undefined, t0 + 30_000);
    await settle();
    expect(patches.map((p) => [p.url.split('/').pop(), p.annotation]).sort()).toEqual(
      [
        ['env-a', '2026-12-01T10:00:00Z'],
        ['env-a', '2026-12-01T10:00:30Z'],
        ['env-b', '2026-12-01T10:00:00Z'],
      ].sort(),
    );
  });

  it('writes at least four times per idle timeout when the timeout is shorter than the interval', async () => {
    patches.length = 0;
    const rec = new ActivityRecorder(kc, { intervalMs: 30_000, log: pino({ level: 'silent' }) });
    const t0 = Date.parse('2026-12-01T10:00:00Z');
    // idleTimeout 20 s: a write every 5 s at most, so an agent working steadily never looks idle.
    for (let i = 0; i <= 20; i++) rec.touch('ns', 'env-s', 20_000, t0 + i * 1_000);
    await settle();
    expect(patches.map((p) => p.annotation)).toEqual([
      '2026-12-01T10:00:00Z',
      '2026-12-01T10:00:05Z',
      '2026-12-01T10:00:10Z',
      '2026-12-01T10:00:15Z',
      '2026-12-01T10:00:20Z',
    ]);
  });
});
