import type { Http2SecureServer } from 'node:http2';
import { fastifyConnectPlugin } from '@connectrpc/connect-fastify';
import { parseHostPort } from '@waggle/crds';
import { fastify } from 'fastify';
import type { Agent } from './agent.ts';
import { authorizeClients, clientIdentityValues } from './api/client-authz.ts';
import { logRequests } from './api/request-log.ts';
import { nodeAgentRoutes } from './api/routes.ts';
import type { EnvIds } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { serveVersion, type VersionInfo } from './version.ts';

const TLS_MIN_VERSION = 'TLSv1.3';

/**
 * Two listeners: the ConnectRPC API over HTTP/2 — with `tls`, mutual TLS that admits only
 * clients whose certificate the given CA signed, each allowed only its RPCs by the certificate's
 * CN (operator: VM lifecycle; gateway: exec and files; see api/client-authz.ts); without, cleartext h2c
 * for local development — and an HTTP/1.1 ops listener for probes and Prometheus (kubelet
 * probes speak HTTP/1.1, which an HTTP/2-only server cannot answer).
 */
export async function startServers(opts: {
  agent: Agent;
  metrics: Metrics;
  listen: string;
  opsListen: string;
  isReady: () => boolean;
  /** Answered at the ops listener's `/version`. */
  version?: VersionInfo;
  /** Learns each VM's environment id from the calls, for the logs (see api/request-log.ts). */
  envIds?: EnvIds;
  tls?: { cert: string; key: string; clientCA: string };
  /**
   * Close an HTTP/2 session after this long without any frame (0: never, the default). Fastify's
   * own default (72 s) closes a session under a long silent stream — an install or exec quiet for
   * minutes — and a large message written after that close was cut off ("Premature close" at the
   * client). Clients keep their sessions alive with pings and close idle ones themselves.
   */
  http2SessionTimeoutMs?: number;
}): Promise<{
  apiUrl: string;
  opsUrl: string;
  /** Serves a renewed certificate to new connections (mutual TLS only). */
  reloadTls(tls: { cert: string; key: string; clientCA: string }): void;
  close(): Promise<void>;
}> {
  // With `https`, fastify creates an HTTP/2 secure server; the routes are the same either way.
  const api = fastify({
    http2: true,
    logger: false,
    http2SessionTimeout: opts.http2SessionTimeoutMs ?? 0,
    ...(opts.tls
      ? {
          https: {
            cert: opts.tls.cert,
            key: opts.tls.key,
            ca: opts.tls.clientCA,
            requestCert: true,
            rejectUnauthorized: true,
            minVersion: TLS_MIN_VERSION,
          },
        }
      : {}),
  } as { http2: true; logger: false });
  await api.register(fastifyConnectPlugin, {
    routes: nodeAgentRoutes(opts.agent),
    contextValues: clientIdentityValues,
    interceptors: [
      logRequests(opts.agent.log, opts.envIds),
      (next) => async (req) => {
        try {
          const res = await next(req);
          opts.metrics.rpcs.inc({ method: req.method.name, code: 'ok' });
          return res;
        } catch (err) {
          opts.metrics.rpcs.inc({
            method: req.method.name,
            code: String((err as { code?: unknown }).code ?? 'unknown'),
          });
          throw err;
        }
      },
      authorizeClients,
    ],
  });
  const ops = fastify({ logger: false });
  ops.get('/healthz', async () => ({ status: 'ok' }));
  if (opts.version) serveVersion(ops, opts.version);
  ops.get('/readyz', async (_req, reply) => {
    if (!opts.isReady()) return reply.code(503).send({ status: 'starting' });
    return { status: 'ready' };
  });
  ops.get('/metrics', async (_req, reply) => {
    opts.metrics.vms.set(opts.agent.vms.list().length);
    return reply.type(opts.metrics.registry.contentType).send(await opts.metrics.registry.metrics());
  });
  const a = parseHostPort(opts.listen);
  const o = parseHostPort(opts.opsListen);
  const apiUrl = await api.listen({ host: a.host, port: a.port });
  const opsUrl = await ops.listen({ host: o.host, port: o.port });
  return {
    apiUrl,
    opsUrl,
    reloadTls(tls) {
      if (!opts.tls) return;
      (api.server as unknown as Http2SecureServer).setSecureContext({
        cert: tls.cert,
        key: tls.key,
        ca: tls.clientCA,
        minVersion: TLS_MIN_VERSION,
      });
    },
    async close() {
      await Promise.all([api.close(), ops.close()]);
    },
  };
}
