import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { type FastifyError, type FastifyReply, type FastifyRequest, fastify } from 'fastify';
import type { Logger } from 'pino';
import type { Caller } from '../auth/caller.ts';
import { AuthError } from '../errors.ts';
import type { SessionRegistry } from '../mcp/sessions.ts';
import type { GatewayMetrics } from '../metrics.ts';
import { serveVersion, type VersionInfo } from '../version.ts';
import { closeAfterReply, hasBody, isClosing } from './lingering-close.ts';
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
  /** Largest request body read (413 beyond); read only after Origin and auth passed. */
  bodyLimitBytes: number;
  /** Node http server timeouts (ms): see WAGGLE_HEADERS_TIMEOUT and the next two. */
  timeouts: { headersMs: number; requestMs: number; keepAliveMs: number };
  /** Serves preview URLs (`/preview/…`, `/environments/<id>/ports/<port>/…`) before fastify. */
  preview?: PreviewProxyDeps;
  /** Answered at `/version` (no secret: the image's tag says as much). */
  version?: VersionInfo;
  log: Logger;
}

const rpcError = (code: number, message: string) => ({ jsonrpc: '2.0', error: { code, message }, id: null });

/**
 * The HTTP edge: `/mcp` (Streamable HTTP), preview URLs, `/healthz`, `/readyz`, `/version`. Not `/metrics`: that
 * has a listener of its own (`metrics-server.ts`): the public port tells callers nothing of other callers.
 *
 * Hostile traffic costs little: Origin/Host and the bearer token are checked on the headers
 * (an `onRequest` hook) before any body byte is read, and a refusal closes the connection rather
 * than drain a body; an accepted request's body is read up to `bodyLimitBytes` (the largest legal
 * tool call) and refused with 413 beyond. A refused client that is still sending gets its answer,
 * then a bounded lingering close (`lingering-close.ts`) rather than a reset. The server closes connections whose headers take
 * longer than `headersMs` (slow-loris; an idle new connection too), requests whose body takes
 * longer than `requestMs`, and kept-alive connections idle for `keepAliveMs`. Nothing bounds a
 * response once the request is in: SSE streams, long `execute` calls and preview WebSockets
 * (upgraded sockets leave the HTTP server) run as long as they need.
 */
export function buildApp(o: AppOptions) {
  // Requests are logged by the MCP layer (per tool call), not per HTTP request.
  // Preview URLs are relayed as byte streams (any method, any body size, WebSocket upgrades), so
  // they are taken off the server before fastify would parse a body (the preview proxy, too,
  // authenticates on headers before it relays a body).
  const preview = o.preview;
  const t = o.timeouts;
  const app = fastify({
    logger: false,
    bodyLimit: o.bodyLimitBytes,
    serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
      const server = createServer(
        {
          headersTimeout: t.headersMs,
          requestTimeout: t.requestMs,
          keepAliveTimeout: t.keepAliveMs,
          // How often Node checks the two timeouts above (default 30 s would let a slow-loris
          // connection live up to 30 s longer than allowed).
          connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(t.headersMs / 4))),
        },
        (req, res) => {
          // A request pipelined behind a refused one (see lingering-close.ts) is never served;
          // the linger closes the connection.
          if (isClosing(req.socket)) return void req.resume();
          if (preview && isPreviewPath(req.url)) void proxyPreviewRequest(preview, req, res);
          else handler(req, res);
        },
      );
      server.on('upgrade', (req, socket, head) => {
        if (isClosing(socket as Socket)) return; // sent on a refused connection: it closes
        if (preview && isPreviewPath(req.url)) void proxyPreviewUpgrade(preview, req, socket, head);
        else socket.destroy();
      });
      return server;
    },
  });
  app.decorateRequest('caller', undefined as Caller | undefined);

  const refuse = (
    req: FastifyRequest,
    reply: FastifyReply,
    status: number,
    code: number,
    message: string,
  ) => {
    // Do not read a body we will not use: answer and close the connection (after a bounded linger).
    if (hasBody(req.raw)) closeAfterReply(req.raw, reply.raw);
    return reply.code(status).send(rpcError(code, message));
  };

  /** Origin and auth, from the headers alone: runs before fastify reads the body. */
  const guard = async (req: FastifyRequest, reply: FastifyReply) => {
    const refused = checkOrigin(o.origin, { host: req.headers.host, origin: req.headers.origin });
    if (refused) {
      o.log.warn({ host: req.headers.host, origin: req.headers.origin }, 'request refused by origin check');
      return refuse(req, reply, 403, -32000, `Forbidden: ${refused}`);
    }
    try {
      (req as FastifyRequest & { caller?: Caller }).caller = await o.authenticate(
        req.headers,
        req.raw.socket.remoteAddress,
      );
    } catch (err) {
      if (err instanceof AuthError) {
        o.metrics.authFailures.inc({ status: String(err.status) });
        if (err.status === 401) reply.header('www-authenticate', 'Bearer realm="waggle"');
        if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds));
        return refuse(req, reply, err.status, -32001, err.message);
      }
      o.log.error({ err }, 'authentication failed');
      return refuse(req, reply, 503, -32603, 'authentication is unavailable; try again');
    }
  };

  const mcp = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const caller = (req as FastifyRequest & { caller?: Caller }).caller as Caller;
    reply.hijack();
    // Pipelined behind a refusal, authenticated before that refusal was sent: not served.
    if (isClosing(req.raw.socket)) return void req.raw.resume();
    await o.sessions.handle(req.raw, reply.raw, req.body, caller);
  };
  app.route({ method: ['GET', 'POST', 'DELETE'], url: '/mcp', onRequest: guard, handler: mcp });

  // Body errors as JSON-RPC errors that say what to do.
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const status = err.statusCode ?? 500;
    if (status === 413) {
      o.metrics.bodyTooLarge.inc();
      closeAfterReply(req.raw, reply.raw);
      return reply
        .code(413)
        .send(
          rpcError(
            -32600,
            `request body too large: the gateway reads at most ${o.bodyLimitBytes} bytes, enough for the ` +
              'largest tool call (write_file of WAGGLE_MAX_FILE_BYTES base64-encoded). Send binary or ' +
              'heavily escaped content with encoding: "base64", or split the file.',
          ),
        );
    }
    if (status === 400 && err.code?.startsWith('FST_ERR_CTP')) {
      return reply.code(400).send(rpcError(-32700, `Parse error: ${err.message}`));
    }
    if (status === 415) {
      return reply
        .code(415)
        .send(rpcError(-32000, 'Unsupported Media Type: send Content-Type: application/json'));
    }
    if (status === 408) return reply.code(408).send(rpcError(-32000, 'the request body took too long'));
    if (status >= 500) o.log.error({ err, url: req.url }, 'request failed');
    return reply.code(status).send(rpcError(status >= 500 ? -32603 : -32000, err.message));
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  if (o.version) serveVersion(app, o.version);
  app.get('/readyz', async (_req, reply) =>
    o.ready() ? { status: 'ready' } : reply.code(503).send({ status: 'syncing caches' }),
  );
  return app;
}
