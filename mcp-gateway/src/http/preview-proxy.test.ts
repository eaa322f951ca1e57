import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { WaggleEnvironment } from '@waggle/crds';
import type { ForwardPortRequest, ForwardPortResponse } from '@waggle/node-agent/client';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openTunnel } from '../services/port-tunnel.ts';
import {
  type PreviewTarget,
  proxyPreviewRequest,
  proxyPreviewUpgrade,
  scopeCookie,
} from './preview-proxy.ts';

// The proxy against a hostile "guest" (a local TCP server) behind a fake ForwardPort, as the
// node-agent's tunnel would deliver it.
const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

const response = (msg: ForwardPortResponse['msg']) =>
  ({ $typeName: 'waggle.nodeagent.v1.ForwardPortResponse', msg }) as ForwardPortResponse;

/** A fake ForwardPort that connects to a local TCP port. */
function forwardTo(port: number) {
  return async function* (requests: AsyncIterable<unknown>, signal: AbortSignal) {
    const it = (requests as AsyncIterable<ForwardPortRequest>)[Symbol.asyncIterator]();
    await it.next();
    const sock = net.connect(port, '127.0.0.1');
    await once(sock, 'connect');
    signal.addEventListener('abort', () => sock.destroy(), { once: true });
    void (async () => {
      for (;;) {
        const n = await it.next();
        if (n.done) break;
        if (n.value.msg.case === 'data' && !sock.write(n.value.msg.value)) await once(sock, 'drain');
      }
      sock.end();
    })().catch(() => sock.destroy());
    try {
      yield response({ case: 'opened', value: true });
      for await (const c of sock) yield response({ case: 'data', value: new Uint8Array(c as Buffer) });
    } finally {
      sock.destroy();
    }
  };
}

async function listen(server: net.Server | http.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** A gateway serving /p/… from the guest on `guestPort`; `revoke` ends the URL mid-connection. */
async function gateway(guestPort: number) {
  const tunnels: Duplex[] = [];
  let revoke: (() => void) | undefined;
  const deps = {
    log: pino({ level: 'silent' }),
    touch: () => undefined,
    resolve: async (req: http.IncomingMessage): Promise<PreviewTarget> => ({
      env: { metadata: { name: 'env-1', namespace: 'ns' } } as WaggleEnvironment,
      port: 8000,
      prefix: '/p',
      path: (req.url ?? '/').replace(/^\/p/, '') || '/',
      watch: (onRevoked) => {
        revoke = onRevoked;
        return () => undefined;
      },
    }),
    openPort: async () => {
      const t = await openTunnel(forwardTo(guestPort), { vmId: 'vm', port: 8000 });
      tunnels.push(t);
      return t;
    },
  };
  const server = http.createServer((req, res) => void proxyPreviewRequest(deps, req, res));
  server.on('upgrade', (req, s, h) => void proxyPreviewUpgrade(deps, req, s, h));
  const port = await listen(server);
  closers.push(() => server.closeAllConnections());
  return { port, tunnels, revoke: () => revoke?.() };
}

/** A guest that answers every request with `reply` and records what it received. */
async function rawGuest(reply: string | ((data: string) => string | undefined)) {
  const seen: string[] = [];
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.on('data', (d) => {
      seen.push(d.toString('latin1'));
      const r = typeof reply === 'string' ? reply : reply(d.toString('latin1'));
      if (r !== undefined) s.write(Buffer.from(r, 'latin1'));
    });
  });
  return { port: await listen(server), seen };
}

const get = (port: number, path: string, opts: http.RequestOptions = {}) =>
  new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const r = http.request({ port, path, ...opts }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    r.on('error', reject);
    r.end();
  });

describe('preview proxy against a hostile guest', () => {
  it('answers 502 to a response Node cannot relay (control bytes in the reason phrase) and keeps running', async () => {
    const guest = await rawGuest('HTTP/1.1 200 O\u0001K\r\ncontent-length: 2\r\n\r\nok');
    const gw = await gateway(guest.port);
    const r = await get(gw.port, '/p/x');
    expect([200, 502]).toContain(r.status); // relayed without the reason phrase, or refused
    expect((await get(gw.port, '/p/y')).status).toBeLessThan(600); // the process is still serving
  });

  it('never turns a declined WebSocket upgrade into a raw pipe: the next request on the connection does not reach the guest', async () => {
    const guest = await rawGuest(
      'HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\nconnection: keep-alive\r\n\r\nnope',
    );
    const gw = await gateway(guest.port);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(() => agent.destroy());
    const upgrade = await new Promise<string>((resolve) => {
      const r = http.request({
        port: gw.port,
        path: '/p/ws',
        agent,
        headers: { connection: 'Upgrade', upgrade: 'websocket', authorization: 'Bearer SECRET-1' },
      });
      r.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.statusCode)));
      });
      r.on('upgrade', (_res, s) => {
        s.destroy();
        resolve('upgraded');
      });
      r.end();
    });
    expect(upgrade).toBe('404');
    await get(gw.port, '/mcp', { agent, headers: { authorization: 'Bearer SECRET-2' } }).catch(
      () => undefined,
    );
    await new Promise((r) => setTimeout(r, 100));
    const all = guest.seen.join('');
    expect(all).not.toContain('SECRET');
    // Whatever reached the guest came through the proxy (rewritten), never as raw bytes.
    expect(all.match(/^GET /gm)?.length).toBe(all.match(/^x-forwarded-prefix: \/p$/gim)?.length);
  });

  it('re-frames a chunked body so it cannot smuggle a second request to the guest', async () => {
    const guest = await rawGuest('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    const gw = await gateway(guest.port);
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: evil\r\n\r\n';
    const c = net.connect(gw.port, '127.0.0.1');
    c.on('error', () => undefined);
    c.write(
      `GET /p/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`,
    );
    await new Promise((r) => setTimeout(r, 300));
    c.destroy();
    const all = guest.seen.join('');
    expect(all).toMatch(/transfer-encoding: chunked/i);
    // The smuggled line arrives inside a chunk (after its size line), not as a request of its own.
    expect(all).toMatch(/\r\n[0-9a-f]+\r\nGET \/smuggled/);
  });

  it('keeps cookies under the prefix, drops origin-wide headers and the caller credentials', async () => {
    const guest = await rawGuest(
      'HTTP/1.1 200 OK\r\nset-cookie: sid=1; Path=/; Domain=example.com; HttpOnly\r\n' +
        'service-worker-allowed: /\r\nclear-site-data: "*"\r\ncontent-length: 2\r\n\r\nok',
    );
    const gw = await gateway(guest.port);
    const r = await get(gw.port, '/p/a', {
      headers: { authorization: 'Bearer SECRET', 'x-waggle-namespace': 'n' },
    });
    expect(r.headers['set-cookie']).toEqual(['sid=1; Path=/p/; HttpOnly']);
    expect(r.headers['service-worker-allowed']).toBeUndefined();
    expect(r.headers['clear-site-data']).toBeUndefined();
    const seen = guest.seen.join('').toLowerCase();
    expect(seen).not.toContain('secret');
    expect(seen).not.toContain('x-waggle-namespace');
    expect(seen).toContain('x-forwarded-prefix: /p');
  });

  it('closes the tunnel after a complete response even when the guest keeps the connection open', async () => {
    const guest = await rawGuest('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
    const gw = await gateway(guest.port);
    await get(gw.port, '/p/a');
    await new Promise((r) => setTimeout(r, 100));
    expect(gw.tunnels.every((t) => t.destroyed)).toBe(true);
  });

  it('ends an open WebSocket when its URL is revoked (unexposed, expired or environment deleted)', async () => {
    const guest = await rawGuest((data) =>
      data.startsWith('GET ')
        ? 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n'
        : undefined,
    );
    const gw = await gateway(guest.port);
    const socket = await new Promise<Duplex>((resolve, reject) => {
      const r = http.request({
        port: gw.port,
        path: '/p/ws',
        headers: { connection: 'Upgrade', upgrade: 'websocket' },
      });
      r.on('upgrade', (_res, s) => resolve(s));
      r.on('response', () => reject(new Error('not upgraded')));
      r.end();
    });
    const closed = once(socket, 'close');
    gw.revoke();
    await closed;
    expect(socket.destroyed).toBe(true);
  });
});

describe('scopeCookie', () => {
  it('sets Path to the prefix and removes Domain, keeping other attributes', () => {
    expect(scopeCookie('a=b; Domain=.x.org; Path=/; Secure; SameSite=Lax', '/preview/t')).toBe(
      'a=b; Path=/preview/t/; Secure; SameSite=Lax',
    );
  });
});
