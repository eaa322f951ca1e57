import { execFile } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCaller } from '../auth/caller.ts';
import { AuthError } from '../errors.ts';
import type { SessionRegistry } from '../mcp/sessions.ts';
import { createGatewayMetrics } from '../metrics.ts';
import { readVersion } from '../version.ts';
import { buildApp } from './app.ts';
import { LINGER_MS } from './lingering-close.ts';
import { makeOriginPolicy } from './origin-guard.ts';

// The HTTP edge alone (no MCP server behind it): how refusals reach a client that is still
// sending. The gateway's integration suite (`test/hostile.test.ts`) covers the same edge with the
// real session registry and authenticator.
const execFileAsync = promisify(execFile);
const BODY_LIMIT = 256 * 1024;
let handled = 0;
const app = buildApp({
  sessions: {
    handle: async (_req: IncomingMessage, res: ServerResponse) => {
      handled += 1;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    },
  } as unknown as SessionRegistry,
  authenticate: async (headers) => {
    if (headers.authorization !== 'Bearer good')
      throw new AuthError(401, 'the bearer token was not accepted');
    return makeCaller('apikey:test', 'default');
  },
  origin: makeOriginPolicy({ loopback: true }),
  metrics: createGatewayMetrics({ sessions: () => 0 }),
  ready: () => true,
  bodyLimitBytes: BODY_LIMIT,
  timeouts: { headersMs: 5_000, requestMs: 30_000, keepAliveMs: 5_000 },
  version: readVersion(),
  log: pino({ level: 'silent' }),
});
let port = 0;
beforeAll(async () => {
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as AddressInfo).port;
});
afterAll(() => app.close());

/**
 * Runs, in another process, `runs` POSTs that each queue `total` bytes of body and then stall
 * for 100 ms before reading — a busy client. A server that closes with unread bytes resets the
 * connection, and the kernel drops the answer the client has not read yet: such a run counts as
 * a reset. Returns each answered run's status, body and how much had been sent by then.
 */
async function busyClients(headers: Record<string, string | number>, total: number, runs: number) {
  const script = `
    import { request } from 'node:http';
    const [port, headers, total, runs] = JSON.parse(process.argv[1]);
    const out = { answers: [], resets: 0 };
    for (let i = 0; i < runs; i++) {
      await new Promise((resolve) => {
        let answered = false;
        const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/mcp',
          headers: { host: '127.0.0.1:' + port, 'content-type': 'application/json', ...headers } });
        req.on('response', (res) => {
          answered = true;
          let body = '';
          res.on('data', (c) => { body += c; });
          res.on('end', () => { out.answers.push({ status: res.statusCode, body }); resolve(); });
        });
        req.on('error', () => { if (!answered) { out.resets += 1; resolve(); } });
        const chunk = Buffer.alloc(1024 * 1024, 0x20);
        for (let sent = 0; sent < total; sent += chunk.length) req.write(chunk);
        setTimeout(() => { const t = Date.now(); while (Date.now() - t < 100); }, 1);
      });
    }
    process.stdout.write(JSON.stringify(out));
  `;
  const { stdout } = await execFileAsync(process.execPath, [
    '--input-type=module',
    '-e',
    script,
    JSON.stringify([port, headers, total, runs]),
  ]);
  return JSON.parse(stdout) as { answers: { status: number; body: string }[]; resets: number };
}

describe('HTTP edge refusals to a client that is still sending', () => {
  it('a body over the limit gets its 413 and message, never a connection reset (20 of 20)', async () => {
    const r = await busyClients({ authorization: 'Bearer good' }, 32 * BODY_LIMIT, 20);
    expect(r.resets).toBe(0);
    expect(r.answers).toHaveLength(20);
    for (const a of r.answers) {
      expect(a.status).toBe(413);
      expect(a.body).toMatch(/request body too large: the gateway reads at most 262144 bytes/);
    }
    expect(handled).toBe(0);
  });

  it('an unauthenticated body gets its 401 and message, never a connection reset (20 of 20)', async () => {
    const r = await busyClients({ 'content-length': 32 * BODY_LIMIT }, 32 * BODY_LIMIT, 20);
    expect(r.resets).toBe(0);
    expect(r.answers).toHaveLength(20);
    for (const a of r.answers) {
      expect(a.status).toBe(401);
      expect(a.body).toMatch(/bearer token was not accepted/);
    }
    expect(handled).toBe(0);
  });

  it('drops a client that keeps sending after its answer within the linger bound', async () => {
    const t0 = Date.now();
    const closedAfterMs = await new Promise<number>((resolve) => {
      // Half-open: the client's side stays open after the server's FIN, and it keeps sending.
      const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => {
        s.write(`POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n`);
        s.write('content-length: 1000000000000\r\n\r\n');
        const t = setInterval(() => s.writable && s.write(Buffer.alloc(16 * 1024, 0x20)), 5);
        s.on('close', () => clearInterval(t));
      });
      s.resume();
      s.on('error', () => undefined);
      s.on('close', () => resolve(Date.now() - t0));
    });
    expect(closedAfterMs).toBeGreaterThanOrEqual(LINGER_MS - 100);
    expect(closedAfterMs).toBeLessThan(LINGER_MS + 2_000);
  });

  it('never serves a request pipelined behind a refused one', async () => {
    const before = handled;
    const body = '{"jsonrpc":"2.0","id":1,"method":"ping"}';
    const data = await new Promise<string>((resolve) => {
      let got = '';
      const s = connect({ host: '127.0.0.1', port }, () => {
        const head = (auth: string) =>
          `POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
          `${auth}content-length: ${body.length}\r\n\r\n${body}`;
        s.write(head('') + head('authorization: Bearer good\r\n'));
      });
      s.on('data', (d) => {
        got += d.toString('latin1');
      });
      s.on('error', () => undefined);
      s.on('close', () => resolve(got));
    });
    expect(data).toMatch(/^HTTP\/1\.1 401 /);
    expect(data.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(handled).toBe(before);
  });
});

describe('HTTP edge /version', () => {
  it('answers the component and its package version, without a token', async () => {
    const r = await app.inject({ method: 'GET', url: '/version', headers: { host: `127.0.0.1:${port}` } });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ component: 'mcp-gateway', version: readVersion().version });
  });
});
