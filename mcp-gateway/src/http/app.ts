import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type FastifyReply, type FastifyRequest, fastify } from 'fastify';
import type { Logger } from 'pino';
import { AuthError } from '../errors.ts';
import type { SessionRegistry } from '../mcp/sessions.ts';
import type { GatewayMetrics } from '../metrics.ts';
import { checkOrigin, type OriginPolicy } from './origin-guard.ts';
import {
  isPreviewPath,
  type PreviewProxyDeps,
  proxyPreviewRequest,
  proxyPreviewUpgrade,
} from './preview-proxy.ts';
import type { RequestAuthenticator } from './request-auth.ts';

export interface AppOptions {
  sessions: SessionRegistry;
  authenticate: RequestAuthenticator;
  origin: OriginPolicy;
  metrics: GatewayMetrics;
  ready: () => boolean;
  bodyLimitBytes: number;
  /** Serves preview URLs (`/preview/…`, `/environments/<id>/ports/<port>/…`) before fastify. */
  preview?: PreviewProxyDeps;
  log: Logger;
}

/** The HTTP edge: `/mcp` (Streamable HTTP), preview URLs, `/healthz`, `/readyz`, `/metrics`. */
export function buildApp(o: AppOptions) {
  // Requests are logged by the MCP layer (per tool call), not per HTTP request.
  // Preview URLs are relayed as byte streams (any method, any body size, WebSocket upgrades), so
  // they are taken off the server before fastify would parse a body.
  const preview = o.preview;
  const app = fastify({
    logger: false,
    bodyLimit: o.bodyLimitBytes,
    ...(preview
      ? {
          serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
            const server = createServer((req, res) => {
              if (isPreviewPath(req.url)) void proxyPreviewRequest(preview, req, res);
              else handler(req, res);
            });
            // What fastify sets on a server it makes itself (it does not with serverFactory).
            server.keepAliveTimeout = 72_000;
            server.on('upgrade', (req, socket, head) => {
              if (isPreviewPath(req.url)) void proxyPreviewUpgrade(preview, req, socket, head);
              else socket.destroy();
            });
            return server;
          },
        }
      : {}),
  });

  const mcp = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const refused = checkOrigin(o.origin, { host: req.headers.host, origin: req.headers.origin });
    if (refused) {
      o.log.warn({ host: req.headers.host, origin: req.headers.origin }, 'request refused by origin check');
      return reply
        .code(403)
        .send({ jsonrpc: '2.0', error: { code: -32000, message: `Forbidden: ${refused}` }, id: null });
    }
    let caller: Awaited<ReturnType<RequestAuthenticator>>;
    try {
      caller = await o.authenticate(req.headers);
    } catch (err) {
      if (err instanceof AuthError) {
        o.metrics.authFailures.inc({ status: String(err.status) });
        if (err.status === 401) reply.header('www-authenticate', 'Bearer realm="waggle"');
        return reply
          .code(err.status)
          .send({ jsonrpc: '2.0', error: { code: -32001, message: err.message }, id: null });
      }
      o.log.error({ err }, 'authentication failed');
      return reply.code(503).send({
        jsonrpc: '2.0',
        error: { code: -32603, message: 'authentication is unavailable; try again' },
        id: null,
      });
    }
    reply.hijack();
    await o.sessions.handle(req.raw, reply.raw, req.body, caller);
  };
  app.post('/mcp', mcp);
  app.get('/mcp', mcp);
  app.delete('/mcp', mcp);

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) =>
    o.ready() ? { status: 'ready' } : reply.code(503).send({ status: 'syncing caches' }),
  );
  app.get('/metrics', async (_req, reply) =>
    reply.type(o.metrics.registry.contentType).send(await o.metrics.registry.metrics()),
  );
  return app;
}
