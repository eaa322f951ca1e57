import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { makeCaller } from '../auth/caller.ts';
import type { SessionRegistry } from '../mcp/sessions.ts';
import { createGatewayMetrics } from '../metrics.ts';
import { buildApp } from './app.ts';
import { startMetricsServer } from './metrics-server.ts';
import { makeOriginPolicy } from './origin-guard.ts';

const metrics = createGatewayMetrics({ sessions: () => 3 });
metrics.observeTool('execute', 'ok', 1500);

describe('the gateway metrics listener', async () => {
  const server = await startMetricsServer('127.0.0.1:0', metrics.registry);
  const app = buildApp({
    sessions: {
      handle: async (_req: IncomingMessage, res: ServerResponse) => void res.writeHead(200).end('{}'),
    } as unknown as SessionRegistry,
    authenticate: async () => makeCaller('apikey:test', 'default'),
    origin: makeOriginPolicy({ loopback: true }),
    metrics,
    ready: () => true,
    bodyLimitBytes: 1024,
    timeouts: { headersMs: 5_000, requestMs: 30_000, keepAliveMs: 5_000 },
    log: pino({ level: 'silent' }),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const publicBase = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  afterAll(() => Promise.all([server.close(), app.close()]));

  it('serves /metrics in the Prometheus text format', async () => {
    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(/^waggle_gateway_sessions 3$/m);
    expect(text).toMatch(/^waggle_gateway_tool_duration_seconds_bucket\{le="2.5",tool="execute"\} 1$/m);
  });

  it('serves nothing else', async () => {
    expect((await fetch(server.url.replace(/\/metrics$/, '/healthz'))).status).toBe(404);
    expect((await fetch(server.url.replace(/\/metrics$/, '/mcp'), { method: 'POST' })).status).toBe(404);
  });

  it('is not on the public MCP port, which keeps its probes', async () => {
    expect((await fetch(`${publicBase}/metrics`)).status).toBe(404);
    expect((await fetch(`${publicBase}/healthz`)).status).toBe(200);
    expect((await fetch(`${publicBase}/readyz`)).status).toBe(200);
  });
});
