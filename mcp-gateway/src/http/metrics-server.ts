import { parseHostPort } from '@waggle/crds';
import { fastify } from 'fastify';
import type { Registry } from 'prom-client';

/**
 * The gateway's metrics listener (WAGGLE_METRICS_LISTEN): `GET /metrics` and nothing else. Kept
 * off the public MCP port so a scraper needs no token and an agent learns nothing about other
 * callers' traffic; the chart exposes it as the Service port `metrics`.
 */
export async function startMetricsServer(
  listen: string,
  registry: Registry,
): Promise<{ url: string; close(): Promise<void> }> {
  const app = fastify({ logger: false });
  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));
  const { host, port } = parseHostPort(listen);
  await app.listen({ host, port });
  const addr = app.server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return { url: `http://${urlHost}:${bound}/metrics`, close: () => app.close() };
}
