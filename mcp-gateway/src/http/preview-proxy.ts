import {
  type IncomingMessage,
  type OutgoingHttpHeaders,
  request,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { WaggleEnvironment } from '@waggle/crds';
import { formatEnvId } from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import { AuthError, UserError } from '../errors.ts';
import { closeAfterReply, hasBody, isClosing } from './lingering-close.ts';

/** Where a preview request goes: an environment's port, and the path to ask the guest for. */
export interface PreviewTarget {
  env: WaggleEnvironment;
  port: number;
  /** The URL prefix the gateway strips (sent to the guest as X-Forwarded-Prefix). */
  prefix: string;
  /** Path and query for the guest, starting with "/". */
  path: string;
  /**
   * Calls `onRevoked` once the URL stops being valid while a connection is open (unexposed,
   * expired, environment deleted); returns the unsubscribe function.
   */
  watch?: (onRevoked: () => void) => () => void;
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
  openPort(env: WaggleEnvironment, port: number, signal: AbortSignal): Promise<Duplex>;
  /** Records use of the environment (idle expiry) while a long connection moves bytes. */
  touch(env: WaggleEnvironment): void;
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
/**
 * Hop-by-hop headers, and what would let one preview reach beyond its prefix on the shared
 * origin: a service worker scope wider than the page, or wiping the origin's data.
 */
const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'service-worker-allowed',
  'clear-site-data',
]);

/** Idle time after which a preview connection is closed (either direction silent). */
const IDLE_TIMEOUT_MS = 300_000;
/** How long opening the tunnel to the guest may take. */
const OPEN_TIMEOUT_MS = 15_000;
/** While a long connection moves bytes, the environment counts as used this often. */
const TOUCH_INTERVAL_MS = 30_000;

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
  // A chunked body is decoded by the server and must be re-framed towards the guest: relayed
  // without framing, its bytes would be parsed by the guest as further requests.
  if (req.headers['transfer-encoding']) {
    out['transfer-encoding'] = 'chunked';
    delete out['content-length'];
  }
  const prior = req.headers['x-forwarded-for'];
  out.host = `localhost:${t.port}`;
  out['x-forwarded-for'] = [prior, req.socket.remoteAddress].filter(Boolean).join(', ');
  out['x-forwarded-host'] = req.headers.host ?? '';
  out['x-forwarded-proto'] = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  out['x-forwarded-prefix'] = t.prefix;
  return out;
}

/** The guest's response headers as the caller may see them: cookies kept under the prefix. */
function callerHeaders(guest: IncomingMessage, t: PreviewTarget): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(guest.headers)) {
    if (v === undefined || DROP_RESPONSE.has(k)) continue;
    out[k] = k === 'set-cookie' ? (v as string[]).map((c) => scopeCookie(c, t.prefix)) : v;
  }
  return out;
}

/** Rewrites a Set-Cookie so it applies only under the preview's prefix (no Domain, Path=prefix). */
export function scopeCookie(cookie: string, prefix: string): string {
  const [pair, ...attrs] = cookie.split(';');
  const kept = attrs.map((a) => a.trim()).filter((a) => a && !/^(domain|path)\s*(=|$)/i.test(a));
  return [pair?.trim() ?? '', `Path=${prefix}/`, ...kept].join('; ');
}

function refuse(res: ServerResponse, r: Refusal) {
  if (res.headersSent) return void res.destroy();
  // A refused request's body is not read: answer, then a bounded lingering close.
  if (hasBody(res.req)) closeAfterReply(res.req, res);
  res.writeHead(r.status, {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    ...r.headers,
  });
  res.end(`${r.message}\n`);
}

interface Refusal {
  status: number;
  message: string;
  headers?: Record<string, string>;
}

/** Maps a failure before the guest answered to an HTTP status and message. */
function refusalOf(err: unknown): Refusal {
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
      ...(err.retryAfterSeconds !== undefined
        ? { headers: { 'retry-after': String(err.retryAfterSeconds) } }
        : {}),
    };
  }
  if (err instanceof UserError) {
    const status =
      err.code === 'environment_not_found' || err.code === 'port_not_exposed'
        ? 404
        : err.code === 'port_not_listening' || err.code === 'environment_not_running'
          ? 502
          : err.code === 'busy'
            ? 503
            : 400;
    return { status, message: err.message };
  }
  return { status: 502, message: 'the environment could not be reached; try again' };
}

/** Resolves the target and opens the tunnel, bounded in time and cancelled if the caller leaves. */
async function connect(
  deps: PreviewProxyDeps,
  req: IncomingMessage,
  callerGone: AbortSignal,
): Promise<{ target: PreviewTarget; tunnel: Duplex }> {
  const target = await deps.resolve(req);
  // Pipelined behind a refused request on this connection: never opened.
  if (isClosing(req.socket)) throw new PreviewRefusal(499, 'the connection carries a refused request');
  const signal = AbortSignal.any([callerGone, AbortSignal.timeout(OPEN_TIMEOUT_MS)]);
  const tunnel = await deps.openPort(target.env, target.port, signal);
  if (callerGone.aborted) {
    tunnel.destroy();
    throw new PreviewRefusal(499, 'the caller went away');
  }
  return { target, tunnel };
}

/** Ends `close` when the URL is revoked, and keeps the environment in use while bytes move. */
function supervise(
  deps: PreviewProxyDeps,
  target: PreviewTarget,
  close: () => void,
): {
  moved: () => void;
  stop: () => void;
} {
  let movedSince = false;
  const unwatch = target.watch?.(close) ?? (() => undefined);
  const timer = setInterval(() => {
    if (movedSince) deps.touch(target.env);
    movedSince = false;
  }, TOUCH_INTERVAL_MS).unref();
  return {
    moved: () => {
      movedSince = true;
    },
    stop: () => {
      clearInterval(timer);
      unwatch();
    },
  };
}

/** Serves one HTTP request of a preview URL: resolve, open a tunnel, relay request and response. */
export async function proxyPreviewRequest(
  deps: PreviewProxyDeps,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const gone = new AbortController();
  res.once('close', () => gone.abort());
  let target: PreviewTarget;
  let tunnel: Duplex;
  try {
    ({ target, tunnel } = await connect(deps, req, gone.signal));
  } catch (err) {
    const r = refusalOf(err);
    if (r.status >= 500 && !(err instanceof UserError)) deps.log.warn({ err }, 'preview request failed');
    req.resume();
    return refuse(res, r);
  }
  const envId = formatEnvId(target.env.metadata.namespace as string, target.env.metadata.name as string);
  const upstream = request({
    createConnection: () => tunnel as never,
    method: req.method,
    path: target.path,
    headers: guestHeaders(req, target),
  });
  const sup = supervise(deps, target, () => {
    upstream.destroy();
    res.destroy();
  });
  upstream.setTimeout(IDLE_TIMEOUT_MS, () => upstream.destroy(new Error('the guest did not answer in time')));
  upstream.on('response', (guest) => {
    try {
      // The guest's reason phrase is not relayed: it may hold bytes Node refuses to write.
      res.writeHead(guest.statusCode ?? 502, callerHeaders(guest, target));
    } catch (err) {
      deps.log.info({ envId, port: target.port, err: (err as Error).message }, 'preview response refused');
      guest.resume();
      tunnel.destroy();
      return refuse(res, {
        status: 502,
        message: `the server on port ${target.port} sent an invalid response`,
      });
    }
    guest.on('data', sup.moved);
    pipeline(guest, res)
      .catch(() => undefined)
      .finally(() => tunnel.destroy());
  });
  upstream.on('error', (err) => {
    deps.log.info({ envId, port: target.port, err: err.message }, 'preview upstream failed');
    tunnel.destroy();
    refuse(res, {
      status: 502,
      message: `the server on port ${target.port} in the environment failed to answer: ${err.message}`,
    });
  });
  res.once('close', () => {
    sup.stop();
    if (!res.writableFinished) upstream.destroy();
    tunnel.destroy();
  });
  pipeline(req, upstream).catch(() => upstream.destroy());
}

/** Writes a plain response on a raw client socket (upgrade requests have no ServerResponse). */
function refuseRaw(socket: Duplex, r: Refusal): void {
  const body = Buffer.from(`${r.message}\n`);
  const head = [
    `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? 'Error'}`,
    'content-type: text/plain; charset=utf-8',
    'connection: close',
    `content-length: ${body.length}`,
    ...Object.entries(r.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), body]));
}

/**
 * Relays a WebSocket (or any HTTP Upgrade) of a preview URL through node:http: a 101 answer
 * splices the two connections (bytes both ways, untouched); any other answer is relayed as a
 * normal response and the caller's connection is closed after it — never left as a raw pipe
 * to the guest, where the caller's next request (and its credentials) would go unchecked.
 */
export async function proxyPreviewUpgrade(
  deps: PreviewProxyDeps,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  socket.on('error', () => undefined);
  const gone = new AbortController();
  socket.once('close', () => gone.abort());
  let target: PreviewTarget;
  let tunnel: Duplex;
  try {
    ({ target, tunnel } = await connect(deps, req, gone.signal));
  } catch (err) {
    if (!socket.destroyed) refuseRaw(socket, refusalOf(err));
    return;
  }
  const headers = guestHeaders(req, target);
  headers.connection = 'Upgrade';
  if (req.headers.upgrade) headers.upgrade = req.headers.upgrade;
  const upstream = request({
    createConnection: () => tunnel as never,
    method: req.method,
    path: target.path,
    headers,
  });
  const closeAll = () => {
    upstream.destroy();
    tunnel.destroy();
    socket.destroy();
  };
  const sup = supervise(deps, target, closeAll);
  socket.once('close', () => {
    sup.stop();
    upstream.destroy();
    tunnel.destroy();
  });
  upstream.on('error', (err) => {
    if (!socket.destroyed) {
      refuseRaw(socket, {
        status: 502,
        message: `the server on port ${target.port} in the environment failed to answer: ${err.message}`,
      });
    }
    tunnel.destroy();
  });
  upstream.on('upgrade', (guest, guestSocket, guestHead) => {
    const lines = [`HTTP/1.1 101 ${STATUS_CODES[101]}`];
    for (let i = 0; i + 1 < guest.rawHeaders.length; i += 2) {
      const name = guest.rawHeaders[i] as string;
      if (!DROP_RESPONSE.has(name.toLowerCase()) || /^(connection|upgrade)$/i.test(name)) {
        lines.push(`${name}: ${guest.rawHeaders[i + 1]}`);
      }
    }
    socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
    if (guestHead.length) socket.write(guestHead);
    if (head.length) guestSocket.write(head);
    (socket as Socket).setTimeout?.(IDLE_TIMEOUT_MS, closeAll);
    guestSocket.on('error', closeAll);
    guestSocket.on('data', sup.moved);
    socket.on('data', sup.moved);
    socket.pipe(guestSocket);
    guestSocket.pipe(socket);
    guestSocket.on('close', () => socket.destroy());
  });
  upstream.on('response', (guest) => {
    // The guest declined the upgrade: relay its answer, then close the caller's connection.
    const lines = [
      `HTTP/1.1 ${guest.statusCode ?? 502} ${STATUS_CODES[guest.statusCode ?? 502] ?? 'Unknown'}`,
    ];
    for (const [k, v] of Object.entries(callerHeaders(guest, target))) {
      if (k === 'content-length') continue;
      for (const value of Array.isArray(v) ? v : [String(v)]) lines.push(`${k}: ${value}`);
    }
    lines.push('connection: close');
    socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
    pipeline(guest, socket)
      .catch(() => undefined)
      .finally(closeAll);
  });
  upstream.end();
}
