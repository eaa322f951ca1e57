import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { connect, type Socket } from 'node:net';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  agentServiceAccount,
  call,
  connectClient,
  endSession,
  errorText,
  initializeBody,
  kubeClients,
  ok,
} from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunningGateway } from '../src/gateway.ts';
import { maxCallBodyBytes } from '../src/tools/schemas.ts';
import { type FakeStack, startFakeStack } from './fake-stack.ts';

// The gateway under hostile traffic, through real sockets against a real apiserver (TokenReview,
// SubjectAccessReview), a real operator and a fake node-agent. Timeouts and limits are set small
// so that each limit is reached in seconds.

const kubeconfigPath = inject('kubeconfigPath');
const { kc, core, rbac } = kubeClients(kubeconfigPath);
const suffix = randomBytes(3).toString('hex');
const ns = `hostile-${suffix}`;
const MAX_FILE_BYTES = 1024 * 1024;
const BODY_LIMIT = maxCallBodyBytes(MAX_FILE_BYTES);
const FAILURES_PER_MINUTE = 10;
const AUDIENCE = 'waggle';

let stack: FakeStack;
let gateway: RunningGateway;
let KEY_MAIN: string;
let KEY_SESSIONS: string;
let KEY_CALLS: string;
let KEY_OTHER: string;
let main: Client;
let host: string;
let port: number;

beforeAll(async () => {
  stack = await startFakeStack({
    kc,
    kubeconfigPath,
    name: 'hostile',
    namespaces: [ns],
    callers: ['main', 'sessions', 'calls', 'other'].map((name) => ({ name, namespace: ns })),
    node: { vms: 10, runtimes: ['python'] },
    gatewayEnv: {
      WAGGLE_TOKEN_AUDIENCES: AUDIENCE,
      WAGGLE_MAX_FILE_BYTES: String(MAX_FILE_BYTES),
      WAGGLE_HEADERS_TIMEOUT: '1s',
      WAGGLE_REQUEST_TIMEOUT: '2s',
      WAGGLE_KEEPALIVE_TIMEOUT: '1s',
      WAGGLE_MAX_SESSIONS_PER_CALLER: '3',
      WAGGLE_MAX_CALLS_PER_CALLER: '2',
      WAGGLE_AUTH_FAILURES_PER_MINUTE: String(FAILURES_PER_MINUTE),
    },
  });
  gateway = stack.gateway as RunningGateway;
  const key = (name: string) => stack.keys[name] as string;
  [KEY_MAIN, KEY_SESSIONS, KEY_CALLS, KEY_OTHER] = [key('main'), key('sessions'), key('calls'), key('other')];
  const u = new URL(gateway.url);
  host = u.hostname;
  port = Number(u.port);
  main = await connectClient(gateway.url, KEY_MAIN, 'main');
}, 120_000);

afterAll(async () => {
  await main?.close();
  await stack?.close();
});

const initialize = initializeBody();

/** A raw connection: what the server sent, when it closed, how many bytes we managed to send. */
interface RawResult {
  data: string;
  closedAfterMs: number;
}

/** Opens a socket, runs `drive` on it, and resolves when the server closes it (or after `maxMs`). */
function raw(drive: (s: Socket) => void, opts: { maxMs?: number; localAddress?: string } = {}) {
  return new Promise<RawResult>((resolve) => {
    const t0 = Date.now();
    const s = connect({ host, port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    let data = '';
    const done = () => resolve({ data, closedAfterMs: Date.now() - t0 });
    const timer = setTimeout(() => {
      s.destroy();
      done();
    }, opts.maxMs ?? 10_000);
    s.on('data', (d) => {
      data += d.toString('latin1');
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      done();
    });
    s.on('connect', () => drive(s));
  });
}

const postHead = (headers: Record<string, string | number>) =>
  `POST /mcp HTTP/1.1\r\n${Object.entries({
    host: `127.0.0.1:${port}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...headers,
  })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;

const statusOf = (r: RawResult) => Number(/^HTTP\/1\.1 (\d{3})/.exec(r.data)?.[1] ?? 0);
const bodyOf = (r: RawResult) => r.data.slice(r.data.indexOf('\r\n\r\n') + 4);

async function gatewayMetric(name: string): Promise<number> {
  const text = await (await fetch(gateway.metricsUrl)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(' ').pop());
  }
  return sum;
}

/** TokenReviews the apiserver itself counted (its own request metric, not the gateway's word). */
async function apiserverTokenReviews(): Promise<number> {
  const server = new URL(kc.getCurrentCluster()?.server as string);
  const opts: RequestOptions = { host: server.hostname, port: server.port, path: '/metrics', method: 'GET' };
  await kc.applyToHTTPSOptions(opts);
  const text = await new Promise<string>((resolve, reject) => {
    const req = httpsRequest(opts, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        t += c;
      });
      res.on('end', () => resolve(t));
    });
    req.on('error', reject);
    req.end();
  });
  let sum = 0;
  for (const line of text.split('\n')) {
    if (
      line.startsWith('apiserver_request_total{') &&
      line.includes('resource="tokenreviews"') &&
      line.includes('verb="POST"')
    )
      sum += Number(line.split(' ').pop());
  }
  return sum;
}

/** A ServiceAccount in `ns` allowed to use Waggle, and a token for it with the given audiences. */
async function serviceAccountToken(name: string, audiences: string[]): Promise<string> {
  return (await agentServiceAccount({ core, rbac }, ns, name))(audiences);
}

describe('mcp-gateway under hostile traffic', () => {
  it('refuses an unauthenticated or foreign-Origin request on its headers, without waiting for its body', async () => {
    // 15 MB announced, not one body byte sent: a gateway that reads the body first never answers.
    const noToken = await raw((s) => s.write(postHead({ 'content-length': 15_000_000 })), { maxMs: 5_000 });
    expect(statusOf(noToken)).toBe(401);
    expect(noToken.data).toMatch(/connection: close/i);
    expect(bodyOf(noToken)).toMatch(/missing bearer token/);
    expect(noToken.closedAfterMs).toBeLessThan(1_000);

    const badToken = await raw(
      (s) =>
        s.write(postHead({ authorization: 'Bearer bad-0123456789abcdef', 'content-length': 15_000_000 })),
      { maxMs: 5_000 },
    );
    expect(statusOf(badToken)).toBe(401);
    expect(badToken.closedAfterMs).toBeLessThan(1_000);

    const foreign = await raw(
      (s) =>
        s.write(
          postHead({
            authorization: `Bearer ${KEY_MAIN}`,
            origin: 'https://evil.example',
            'content-length': 15_000_000,
          }),
        ),
      { maxMs: 5_000 },
    );
    expect(statusOf(foreign)).toBe(403);
    expect((JSON.parse(bodyOf(foreign)) as { error: { message: string } }).error.message).toMatch(
      /Origin "https:\/\/evil.example" is not allowed/,
    );
  });

  it('stops reading an unauthenticated body that is being sent: the server answers while the client still writes', async () => {
    let written = 0;
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({
        host,
        port,
        path: '/mcp',
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': 15_000_000 },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', (err) => (written > 0 ? resolve(-1) : reject(err)));
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = () => {
        while (written < 15_000_000 && req.write(chunk)) written += chunk.length;
      };
      req.on('drain', pump);
      pump();
    });
    expect(status).toBe(401);
    expect(written).toBeLessThan(15_000_000);
  });

  it('refuses an authenticated body larger than the largest tool call with 413 and a JSON-RPC error', async () => {
    const announced = await raw(
      (s) => s.write(postHead({ authorization: `Bearer ${KEY_MAIN}`, 'content-length': BODY_LIMIT + 1 })),
      { maxMs: 5_000 },
    );
    expect(statusOf(announced)).toBe(413);
    const err = JSON.parse(bodyOf(announced)) as {
      jsonrpc: string;
      error: { code: number; message: string };
    };
    expect(err.jsonrpc).toBe('2.0');
    expect(err.error.message).toMatch(
      new RegExp(`request body too large: the gateway reads at most ${BODY_LIMIT} bytes`),
    );
    expect(announced.closedAfterMs).toBeLessThan(1_000);

    // Chunked, no length announced: refused once the limit is passed, not after the whole body.
    let written = 0;
    let answered = false;
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({
        host,
        port,
        path: '/mcp',
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `Bearer ${KEY_MAIN}`,
        },
      });
      req.on('response', (res) => {
        answered = true;
        let body = '';
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      // A reset before the answer fails the test: the client must read why it was refused.
      req.on('error', reject);
      const chunk = Buffer.alloc(256 * 1024, 0x20);
      // Sends until answered (as curl does), so `written` is what was sent before the answer.
      const pump = () => {
        while (!answered && written < 4 * BODY_LIMIT && req.write(chunk)) written += chunk.length;
      };
      req.on('drain', pump);
      pump();
    });
    expect(chunked.status).toBe(413);
    expect(chunked.body).toMatch(/request body too large/);
    expect(written).toBeLessThan(4 * BODY_LIMIT);
  });

  it('accepts the largest legal write_file', { timeout: 60_000 }, async () => {
    const { environment_id: id } = await ok<{ environment_id: string }>(main, 'create_environment', {
      runtime: 'python',
    });
    const content = randomBytes(MAX_FILE_BYTES).toString('base64');
    const r = await ok<{ bytes_written: number }>(main, 'write_file', {
      environment_id: id,
      path: 'big.bin',
      content,
      encoding: 'base64',
    });
    expect(r.bytes_written).toBe(MAX_FILE_BYTES);
    await ok(main, 'destroy_environment', { environment_id: id });
  });

  it('closes a slow-loris connection after the header timeout, and an idle new connection too', async () => {
    const slow = await raw(
      (s) => {
        s.write('POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n');
        const t = setInterval(() => s.writable && s.write(`x-slow-${Date.now()}: 1\r\n`), 200);
        s.on('close', () => clearInterval(t));
      },
      { maxMs: 10_000 },
    );
    expect(slow.closedAfterMs).toBeGreaterThanOrEqual(900);
    expect(slow.closedAfterMs).toBeLessThan(3_000);
    expect(statusOf(slow)).toBe(408);
    const idle = await raw(() => undefined, { maxMs: 10_000 });
    expect(idle.closedAfterMs).toBeLessThan(3_000);
    // A body trickled in slower than the request timeout (authenticated, so it is read).
    const trickle = await raw(
      (s) => {
        s.write(postHead({ authorization: `Bearer ${KEY_MAIN}`, 'content-length': 1000 }));
        const t = setInterval(() => s.writable && s.write(' '), 100);
        s.on('close', () => clearInterval(t));
      },
      { maxMs: 10_000 },
    );
    expect(trickle.closedAfterMs).toBeLessThan(4_000);
    expect(statusOf(trickle)).toBe(408);
  });

  it('keeps long answers open beyond every timeout: an SSE stream and a long execute', {
    timeout: 60_000,
  }, async () => {
    const { environment_id: id } = await ok<{ environment_id: string }>(main, 'create_environment', {
      runtime: 'python',
    });
    // execute for 4 s: longer than the header (1 s), request (2 s) and keep-alive (1 s) timeouts.
    const progress: number[] = [];
    const r = await main.callTool(
      { name: 'execute', arguments: { environment_id: id, code: 'sleep:4000' } },
      undefined,
      { onprogress: (p) => progress.push(p.progress), timeout: 30_000 },
    );
    expect(r.isError).toBeFalsy();
    expect(progress.length).toBeGreaterThanOrEqual(1);

    // A standalone SSE GET stream stays open across the timeouts.
    const init = await fetch(gateway.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${KEY_MAIN}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: initialize,
    });
    const sid = init.headers.get('mcp-session-id') as string;
    await init.body?.cancel();
    const headers = {
      authorization: `Bearer ${KEY_MAIN}`,
      'mcp-session-id': sid,
      'mcp-protocol-version': '2025-11-25',
    };
    await fetch(gateway.url, {
      method: 'POST',
      headers: {
        ...headers,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    }).then((x) => x.body?.cancel());
    const sse = await fetch(gateway.url, { headers: { ...headers, accept: 'text/event-stream' } });
    expect(sse.status).toBe(200);
    const reader = sse.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    let ended = false;
    void reader.read().then(
      (x) => {
        ended = x.done;
      },
      () => {
        ended = true;
      },
    );
    await new Promise((r) => setTimeout(r, 4_000));
    expect(ended).toBe(false);
    await reader.cancel();
    await fetch(gateway.url, { method: 'DELETE', headers }).then((x) => x.body?.cancel());
    await ok(main, 'destroy_environment', { environment_id: id });
  });

  it('caps open sessions per caller with 429 naming the limit; other callers are unaffected', async () => {
    const clients: Client[] = [];
    try {
      for (let i = 0; i < 3; i++) clients.push(await connectClient(gateway.url, KEY_SESSIONS, `s${i}`));
      const extra = await fetch(gateway.url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${KEY_SESSIONS}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: initialize,
      });
      expect(extra.status).toBe(429);
      expect(((await extra.json()) as { error: { message: string } }).error.message).toMatch(
        /apikey:sessions already has 3 open MCP sessions, the most one caller may have \(WAGGLE_MAX_SESSIONS_PER_CALLER\)/,
      );
      const other = await connectClient(gateway.url, KEY_OTHER, 'other');
      await other.close();
      // A session closed (DELETE) gives its slot back.
      const first = clients.shift() as Client;
      await (first.transport as StreamableHTTPClientTransport).terminateSession();
      await first.close();
      clients.push(await connectClient(gateway.url, KEY_SESSIONS, 's3'));
      expect((await clients[2]?.listTools())?.tools.length).toBeGreaterThan(0);
    } finally {
      for (const c of clients) await endSession(c);
    }
  });

  it('caps concurrent tool calls per caller with an isError result naming the limit', {
    timeout: 60_000,
  }, async () => {
    const c1 = await connectClient(gateway.url, KEY_CALLS, 'c1');
    const c2 = await connectClient(gateway.url, KEY_CALLS, 'c2');
    try {
      const { environment_id: id } = await ok<{ environment_id: string }>(c1, 'create_environment', {
        runtime: 'python',
      });
      const long = [
        call(c1, 'execute', { environment_id: id, code: 'sleep:3000' }),
        call(c2, 'execute', { environment_id: id, code: 'sleep:3000' }),
      ];
      await new Promise((r) => setTimeout(r, 500));
      const third = await call(c1, 'list_environments', {});
      expect(third.isError).toBe(true);
      expect(errorText(third)).toMatch(
        /you already have 2 tool calls running at once, the most one caller may have \(WAGGLE_MAX_CALLS_PER_CALLER\)/,
      );
      // Another caller is not held up.
      expect((await call(main, 'list_environments', {})).isError).toBeFalsy();
      for (const r of await Promise.all(long)) expect(r.isError).toBeFalsy();
      expect((await call(c1, 'list_environments', {})).isError).toBeFalsy();
      await ok(c1, 'destroy_environment', { environment_id: id });
    } finally {
      await c1.close();
      await c2.close();
    }
  });

  it('accepts ServiceAccount tokens for the Waggle audience only, and says so to a token for another', {
    timeout: 60_000,
  }, async () => {
    const good = await serviceAccountToken('aud-agent', [AUDIENCE]);
    const sa = await connectClient(gateway.url, good, 'sa');
    try {
      expect((await call(sa, 'list_environments', {})).isError).toBeFalsy();
    } finally {
      await sa.close();
    }
    // The apiserver's default audience (what `kubectl create token` without --audience mints).
    const apiserverAudience = await serviceAccountToken('aud-agent', []);
    const r = await fetch(gateway.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${apiserverAudience}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: initialize,
    });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(
      /the token is not meant for Waggle: it was not issued for the audience "waggle".*--audience waggle/,
    );
  });

  it('turns a burst of bad tokens into few TokenReviews, and keeps serving good tokens', {
    timeout: 60_000,
  }, async () => {
    // A good token from the attacking address, accepted (and cached) before the burst.
    const good = await serviceAccountToken('burst-agent', [AUDIENCE]);
    const from = '127.0.0.5';
    const initFrom = (token: string, localAddress: string) =>
      new Promise<{ status: number; retryAfter: string | undefined; body: string }>((resolve, reject) => {
        const req = httpRequest(
          {
            host,
            port,
            localAddress,
            path: '/mcp',
            method: 'POST',
            agent: false,
            headers: {
              authorization: `Bearer ${token}`,
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
            },
          },
          (res) => {
            let body = '';
            res.on('data', (c) => {
              body += c;
            });
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                retryAfter: res.headers['retry-after'] as string | undefined,
                body,
              }),
            );
          },
        );
        req.on('error', reject);
        req.end(initialize);
      });
    expect((await initFrom(good, from)).status).toBe(200);

    const gwBefore = await gatewayMetric('waggle_gateway_token_reviews_total');
    const apiBefore = await apiserverTokenReviews();
    const N = 200;
    const results: Array<{ status: number; retryAfter: string | undefined; body: string }> = [];
    for (let i = 0; i < N; i += 50) {
      results.push(
        ...(await Promise.all(
          Array.from({ length: 50 }, (_, j) =>
            initFrom(`bad-${i + j}-${randomBytes(20).toString('hex')}`, from),
          ),
        )),
      );
    }
    // The same bad token many times at once: one review at most.
    results.push(
      ...(await Promise.all(Array.from({ length: 50 }, () => initFrom('bad-same-token-x', from)))),
    );
    const gwReviews = (await gatewayMetric('waggle_gateway_token_reviews_total')) - gwBefore;
    const apiReviews = (await apiserverTokenReviews()) - apiBefore;
    expect(results.every((r) => r.status === 401 || r.status === 429)).toBe(true);
    const limited = results.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThan(N - 2 * FAILURES_PER_MINUTE);
    expect(Number(limited[0]?.retryAfter)).toBeGreaterThan(0);
    expect(limited[0]?.body).toMatch(/too many failed authentications from 127\.0\.0\.5/);
    expect(gwReviews).toBeLessThanOrEqual(FAILURES_PER_MINUTE + 2);
    expect(apiReviews).toBeLessThanOrEqual(FAILURES_PER_MINUTE + 2);

    // Accepted tokens are answered from the cache, even from the limited address; another
    // address is not limited.
    expect((await initFrom(good, from)).status).toBe(200);
    const other = await serviceAccountToken('burst-other', [AUDIENCE]);
    expect((await initFrom(other, '127.0.0.1')).status).toBe(200);
  });
});
