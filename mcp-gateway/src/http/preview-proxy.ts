import { type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { WaggleEnvironment } from '@waggle/crds';
import type { Logger } from 'pino';
import { AuthError, UserError } from '../errors.ts';

/** Where a preview request goes: an environment's port, and the path to ask the guest for. */
export interface PreviewTarget {
  env: WaggleEnvironment;
  port: number;
  /** The URL prefix the gateway strips (sent to the guest as X-Forwarded-Prefix). */
  prefix: string;
  /** Path and query for the guest, starting with "/". */
  path: string;
}

/** A request the proxy refuses: HTTP status and a message for the caller. */
export class PreviewRefusal extends Error {
  readonly status: number;
  readonly location: string | undefined;
  constructor(status: number, message: string, location?: string) {
    super(message);
    this.status = status;
    this.location = location;
  }
}

export interface PreviewProxyDeps {
  /** Finds the target of a preview URL, or throws PreviewRefusal / AuthError / UserError. */
  resolve(req: IncomingMessage): Promise<PreviewTarget>;
  openPort(env: WaggleEnvironment, port: number): Promise<Duplex>;
  log: Logger;
}

/** The URL paths the preview proxy serves (everything else is the MCP app's). */
export const isPreviewPath = (url: string | undefined): boolean =>
  !!url && (url.startsWith('/preview/') || /^\/environments\/[^/]+\/ports\//.test(url));

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the caller's credentials never reach the guest. */
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'authorization',
  'x-waggle-namespace',
  'host',
]);
const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Idle time after which a preview connection is closed (either direction silent). */
const IDLE_TIMEOUT_MS = 300_000;

function guestHeaders(req: IncomingMessage, t: PreviewTarget): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const connectionTokens = new Set(
    String(req.headers.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase()),
  );
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || DROP_REQUEST.has(k) || connectionTokens.has(k)) continue;
    out[k] = v;
  }
  const prior = req.headers['x-forwarded-for'];
  out.host = `localhost:${t.port}`;
  out['x-forwarded-for'] = [prior, req.socket.remoteAddress].filter(Boolean).join(', ');
  out['x-forwarded-host'] = req.headers.host ?? '';
  out['x-forwarded-proto'] = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  out['x-forwarded-prefix'] = t.prefix;
  return out;
}

function refuse(res: ServerResponse, status: number, message: string, extra: Record<string, string> = {}) {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(`${message}\n`);
}

/** Maps a failure before the guest answered to an HTTP status and message. */
function refusalOf(err: unknown): { status: number; message: string; headers?: Record<string, string> } {
  if (err instanceof PreviewRefusal) {
    return {
      status: err.status,
      message: err.message,
      ...(err.location ? { headers: { location: err.location } } : {}),
    };
  }
  if (err instanceof AuthError) {
    return {
      status: err.status,
      message: err.message,
      ...(err.status === 401 ? { headers: { 'www-authenticate': 'Bearer realm="waggle"' } } : {}),
    };
  }
  if (err instanceof UserError) {
    const status =
      err.code === 'environment_not_found' || err.code === 'port_not_exposed'
        ? 404
        : err.code === 'port_not_listening' || err.code === 'environment_not_running'
          ? 502
          : 400;
    return { status, message: err.message };
  }
  return { status: 502, message: 'the environment could not be reached; try again' };
}

/** Serves one HTTP request of a preview URL: resolve, open a tunnel, relay request and response. */
export async function proxyPreviewRequest(
  deps: PreviewProxyDeps,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  let target: PreviewTarget;
  let tunnel: Duplex;
  try {
    target = await deps.resolve(req);
    tunnel = await deps.openPort(target.env, target.port);
  } catch (err) {
    const r = refusalOf(err);
    if (r.status >= 500 && !(err instanceof UserError)) deps.log.warn({ err }, 'preview request failed');
    req.resume();
    return refuse(res, r.status, r.message, r.headers);
  }
  const envId = target.env.metadata.name;
  const upstream = request({
    createConnection: () => tunnel as never,
    method: req.method,
    path: target.path,
    headers: guestHeaders(req, target),
  });
  upstream.setTimeout(IDLE_TIMEOUT_MS, () => upstream.destroy(new Error('the guest did not answer in time')));
  upstream.on('response', (guest) => {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(guest.headers)) {
      if (v !== undefined && !DROP_RESPONSE.has(k)) headers[k] = v;
    }
    res.writeHead(guest.statusCode ?? 502, guest.statusMessage, headers);
    pipeline(guest, res).catch(() => tunnel.destroy());
  });
  upstream.on('error', (err) => {
    deps.log.info({ envId, port: target.port, err: err.message }, 'preview upstream failed');
    tunnel.destroy();
    refuse(res, 502, `the server on port ${target.port} in the environment failed to answer: ${err.message}`);
  });
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  pipeline(req, upstream).catch(() => upstream.destroy());
}

/**
 * Relays a WebSocket (or any HTTP Upgrade) of a preview URL: the request head is rewritten and
 * sent through a tunnel, after which bytes are passed both ways untouched (the guest's 101
 * answer included).
 */
export async function proxyPreviewUpgrade(
  deps: PreviewProxyDeps,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  socket.on('error', () => undefined);
  let target: PreviewTarget;
  let tunnel: Duplex;
  try {
    target = await deps.resolve(req);
    tunnel = await deps.openPort(target.env, target.port);
  } catch (err) {
    const r = refusalOf(err);
    const reason =
      r.status === 401
        ? 'Unauthorized'
        : r.status === 403
          ? 'Forbidden'
          : r.status === 404
            ? 'Not Found'
            : 'Bad Gateway';
    socket.end(
      `HTTP/1.1 ${r.status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n` +
        `content-length: ${Buffer.byteLength(r.message) + 1}\r\n\r\n${r.message}\n`,
    );
    return;
  }
  const headers = guestHeaders(req, target);
  headers.connection = 'Upgrade';
  if (req.headers.upgrade) headers.upgrade = req.headers.upgrade;
  const lines = [`${req.method} ${target.path} HTTP/1.1`];
  for (const [k, v] of Object.entries(headers)) {
    for (const value of Array.isArray(v) ? v : [v]) {
      if (!/[\r\n]/.test(value)) lines.push(`${k}: ${value}`);
    }
  }
  tunnel.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (head.length) tunnel.write(head);
  tunnel.on('error', () => socket.destroy());
  (socket as Socket).setTimeout?.(IDLE_TIMEOUT_MS, () => socket.destroy());
  socket.pipe(tunnel);
  tunnel.pipe(socket);
  socket.on('close', () => tunnel.destroy());
  tunnel.on('close', () => socket.destroy());
}
