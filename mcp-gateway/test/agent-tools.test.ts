import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { createNodeAgentClient, VMState } from '@waggle/node-agent/client';
import { call, errorText, ok, waitFor } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type RealStack, startRealStack } from './real-stack.ts';

const run = promisify(execFile);

// Preview URLs, renew, pictures, live output and log messages through the real stack: a real
// operator, a node-agent process with a TCG microVM, the gateway, and the MCP SDK client.
let stack: RealStack;
let custom: CustomObjectsApi;
let client: Client;
let other: Client;
let namespace: string;
let nodeName: string;
let KEY: string;
let OTHER_KEY: string;
let envId: string;
let base: string;

/** A WebSocket echo server with the Python standard library only (the guest has no websockets package). */
const WS_ECHO = String.raw`
import base64, hashlib, socket, struct, threading
GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
def recv_exact(c, buf, n):
    while len(buf) < n:
        d = c.recv(65536)
        if not d: raise EOFError
        buf += d
    return buf
def serve(c):
    try:
        buf = b''
        while b'\r\n\r\n' not in buf:
            d = c.recv(65536)
            if not d: return
            buf += d
        head, buf = buf.split(b'\r\n\r\n', 1)
        key = [l.split(b':', 1)[1].strip() for l in head.split(b'\r\n') if l.lower().startswith(b'sec-websocket-key')][0]
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        c.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + b'\r\n\r\n')
        while True:
            buf = recv_exact(c, buf, 2)
            op, n = buf[0] & 15, buf[1] & 127
            i = 2
            if n == 126:
                buf = recv_exact(c, buf, 4); n = struct.unpack('>H', buf[2:4])[0]; i = 4
            elif n == 127:
                buf = recv_exact(c, buf, 10); n = struct.unpack('>Q', buf[2:10])[0]; i = 10
            buf = recv_exact(c, buf, i + 4 + n)
            mask = buf[i:i + 4]
            data = bytes(b ^ mask[j % 4] for j, b in enumerate(buf[i + 4:i + 4 + n]))
            buf = buf[i + 4 + n:]
            if op == 8:
                c.sendall(b'\x88\x00'); return
            reply = b'echo: ' + data
            c.sendall(bytes([0x81, len(reply)]) + reply if len(reply) < 126 else bytes([0x81, 126]) + struct.pack('>H', len(reply)) + reply)
    except EOFError:
        pass
    finally:
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8765)); s.listen(16)
print('listening', flush=True)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

/** Starts a server in the environment and waits until the port answers. */
async function startServer(code: string, language: string, port: number): Promise<void> {
  await ok(client, 'execute', { environment_id: envId, code, language, background: true });
  await waitFor(
    async () =>
      ok<{ exit_code: number }>(client, 'execute', {
        environment_id: envId,
        language: 'shell',
        code: `exec 3<>/dev/tcp/127.0.0.1/${port}`,
      }).then((r) => r.exit_code),
    (rc) => rc === 0,
    `a server on port ${port} in the guest`,
    { timeoutMs: 60_000 },
  );
}

beforeAll(async () => {
  stack = await startRealStack({
    kubeconfigPath: inject('kubeconfigPath'),
    name: 'tools',
    vmNetworkCidr: '10.253.30.0/24',
    tenants: ['analyst', 'other'],
    gatewayEnv: { WAGGLE_MAX_LIFETIME: '2h' },
  });
  const analyst = stack.tenants.analyst as NonNullable<RealStack['tenants'][string]>;
  const otherTenant = stack.tenants.other as NonNullable<RealStack['tenants'][string]>;
  ({ custom, nodeName, base } = stack);
  ({ client, namespace, key: KEY } = analyst);
  ({ client: other, key: OTHER_KEY } = otherTenant);
  const env = await ok<{ environment_id: string }>(client, 'create_environment', { runtime: 'python' });
  envId = env.environment_id;
}, 900_000);

afterAll(async () => {
  await stack?.close();
});

describe('preview URLs (expose_port) through the gateway, the node-agent and SSH to the guest port', () => {
  it('serves a file from python3 -m http.server: privately with the token, publicly by secret URL; unexpose ends both', {
    timeout: 300_000,
  }, async () => {
    await ok(client, 'write_file', {
      environment_id: envId,
      path: 'site/hello.txt',
      content: 'hello from the VM\n',
    });
    await startServer('cd site && exec python3 -m http.server 8000', 'shell', 8000);

    const priv = await ok<{ url: string; auth: string; public: boolean }>(client, 'expose_port', {
      environment_id: envId,
      port: 8000,
    });
    expect(priv).toMatchObject({ auth: 'bearer', public: false });
    expect(priv.url).toBe(`${base}/environments/${envId}/ports/8000/`);
    const auth = { authorization: `Bearer ${KEY}` };
    const got = await fetch(`${priv.url}hello.txt`, { headers: auth });
    expect(got.status).toBe(200);
    expect(await got.text()).toBe('hello from the VM\n');
    // Without the token, with another tenant's token, or for a port not exposed: refused.
    expect((await fetch(`${priv.url}hello.txt`)).status).toBe(401);
    expect(
      (await fetch(`${priv.url}hello.txt`, { headers: { authorization: `Bearer ${OTHER_KEY}` } })).status,
    ).toBe(404);
    const unexposed = await fetch(`${base}/environments/${envId}/ports/8001/`, { headers: auth });
    expect(unexposed.status).toBe(404);
    expect(await unexposed.text()).toMatch(/not exposed; call expose_port first/);
    // The guest never sees the caller's credentials.
    await ok(client, 'write_file', {
      environment_id: envId,
      path: 'headers.py',
      content: [
        'import http.server',
        'class H(http.server.BaseHTTPRequestHandler):',
        '    def do_GET(self):',
        '        body = "\\n".join(f"{k.lower()}: {v}" for k, v in self.headers.items()).encode()',
        '        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()',
        '        self.wfile.write(body)',
        'http.server.ThreadingHTTPServer(("127.0.0.1", 8001), H).serve_forever()',
      ].join('\n'),
    });
    await startServer('python3 headers.py', 'shell', 8001);
    const echo = await ok<{ url: string }>(client, 'expose_port', { environment_id: envId, port: 8001 });
    const seen = await (await fetch(`${echo.url}x?y=1`, { headers: { ...auth, 'x-app': 'kept' } })).text();
    expect(seen).toMatch(/^x-app: kept$/m);
    expect(seen).toMatch(new RegExp(`^x-forwarded-prefix: /environments/${envId}/ports/8001$`, 'm'));
    expect(seen).not.toMatch(/authorization/i);
    expect(seen).not.toContain(KEY);

    const pub = await ok<{ url: string; auth: string; expires_at: string }>(client, 'expose_port', {
      environment_id: envId,
      port: 8000,
      public: true,
      expires_minutes: 5,
    });
    expect(pub.auth).toBe('none');
    expect(pub.url).toMatch(new RegExp(`^${base}/preview/[A-Za-z0-9_-]{43}/$`));
    expect(Date.parse(pub.expires_at) - Date.now()).toBeGreaterThan(4 * 60_000);
    const open = await fetch(`${pub.url}hello.txt`);
    expect(await open.text()).toBe('hello from the VM\n');
    // Without the trailing slash: redirected under the prefix so relative links work.
    const bare = await fetch(pub.url.replace(/\/$/, ''), { redirect: 'manual' });
    expect(bare.status).toBe(308);
    // A guessed token is not a URL.
    expect((await fetch(`${base}/preview/${'A'.repeat(43)}/hello.txt`)).status).toBe(404);

    await ok(client, 'unexpose_port', { environment_id: envId, port: 8000 });
    await waitFor(
      async () => (await fetch(`${pub.url}hello.txt`)).status,
      (s) => s === 404,
      'the public URL to stop working',
      { timeoutMs: 10_000 },
    );
    await waitFor(
      async () => (await fetch(`${priv.url}hello.txt`, { headers: auth })).status,
      (s) => s === 404,
      'the private URL to stop working',
      { timeoutMs: 10_000 },
    );
  });

  it('relays a WebSocket echo server in the guest through the same path', { timeout: 300_000 }, async () => {
    await startServer(WS_ECHO, 'python', 8765);
    const pub = await ok<{ url: string }>(client, 'expose_port', {
      environment_id: envId,
      port: 8765,
      public: true,
    });
    const ws = new WebSocket(`${pub.url.replace(/^http/, 'ws')}socket`);
    const replies: string[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.onerror = () => reject(new Error('the WebSocket failed'));
      ws.onopen = () => {
        ws.send('one');
        ws.send('x'.repeat(1000));
      };
      ws.onmessage = (m) => {
        replies.push(String(m.data));
        if (replies.length === 2) resolve();
      };
    });
    ws.close();
    expect(replies).toEqual(['echo: one', `echo: ${'x'.repeat(1000)}`]);
  });

  it('answers 502 with a reason when the guest server speaks garbage or hangs up, and keeps serving others', {
    timeout: 120_000,
  }, async () => {
    await startServer(
      [
        'import socket',
        's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
        "s.bind(('127.0.0.1', 8666)); s.listen(8)",
        'n = 0',
        'while True:',
        '    c, _ = s.accept(); n += 1',
        "    c.recv(65536); c.sendall(b'\\x00garbage, not HTTP\\r\\n\\r\\n' if n % 2 else b''); c.close()",
      ].join('\n'),
      'python',
      8666,
    );
    const bad = await ok<{ url: string }>(client, 'expose_port', {
      environment_id: envId,
      port: 8666,
      public: true,
    });
    const first = await fetch(`${bad.url}x`);
    const second = await fetch(`${bad.url}x`);
    expect([first.status, second.status]).toEqual([502, 502]);
    expect(await first.text()).toMatch(/the server on port 8666 in the environment failed to answer/);
    // The gateway is fine: MCP and other previews still answer.
    expect((await ok<{ count: number }>(client, 'list_environments', {})).count).toBeGreaterThan(0);
    await ok(client, 'unexpose_port', { environment_id: envId, port: 8666 });
  });

  it('refuses bad ports with messages that say what to do', { timeout: 120_000 }, async () => {
    const notListening = await call(client, 'expose_port', { environment_id: envId, port: 9 });
    expect(notListening.isError).toBe(true);
    expect(errorText(notListening)).toMatch(
      /nothing is listening on port 9 in the environment; start the server/,
    );
    const outOfRange = await call(client, 'expose_port', { environment_id: envId, port: 70000 });
    expect(outOfRange.isError).toBe(true);
    expect(errorText(outOfRange)).toMatch(/port must be from 1 to 65535/);
    const notExposed = await call(client, 'unexpose_port', { environment_id: envId, port: 4444 });
    expect(notExposed.isError).toBe(true);
    expect(errorText(notExposed)).toMatch(/port 4444 .* is not exposed/);
    const expiryWithoutPublic = await call(client, 'expose_port', {
      environment_id: envId,
      port: 8001,
      expires_minutes: 5,
    });
    expect(errorText(expiryWithoutPublic)).toMatch(/expires_minutes applies to public URLs only/);
    const foreign = await call(other, 'expose_port', { environment_id: envId, port: 8001 });
    expect(foreign.isError).toBe(true);
    expect(errorText(foreign)).toMatch(/does not exist \(or belongs to someone else\)/);
  });
});

describe('extend_environment', () => {
  it('sets a new idle timeout from now, reports expires_at, and refuses more than the maximum lifetime', {
    timeout: 120_000,
  }, async () => {
    const before = Date.now();
    const r = await ok<{ timeout: number; expires_at: string; max_expires_at: string }>(
      client,
      'extend_environment',
      {
        environment_id: envId,
        timeout_minutes: 90,
      },
    );
    expect(r.timeout).toBe(90);
    const expires = Date.parse(r.expires_at);
    expect(expires).toBeGreaterThanOrEqual(before - 1_000 + 90 * 60_000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 90 * 60_000 + 1_000);
    expect(Date.parse(r.max_expires_at)).toBeGreaterThan(expires); // created within the last hour, lives 2 h
    const obj = (await custom.getNamespacedCustomObject({
      group: 'waggle.dev',
      version: 'v1alpha1',
      plural: 'waggleenvironments',
      namespace,
      name: envId,
    })) as { spec: { idleTimeout: string; maxLifetime: string } };
    expect(obj.spec).toMatchObject({ idleTimeout: '90m', maxLifetime: '2h' });
    // The operator publishes the same expiry in status.
    await waitFor(
      async () => {
        const list = await ok<{ environments: Array<{ environment_id: string; expires_at?: string }> }>(
          client,
          'list_environments',
          {},
        );
        return list.environments.find((e) => e.environment_id === envId)?.expires_at;
      },
      (at) => at !== undefined && Math.abs(Date.parse(at) - expires) < 2_000,
      'status.expiresAt to follow the new timeout',
      { timeoutMs: 30_000 },
    );

    const tooLong = await call(client, 'extend_environment', { environment_id: envId, timeout_minutes: 121 });
    expect(tooLong.isError).toBe(true);
    expect(errorText(tooLong)).toMatch(/above this environment's maximum lifetime of 120 minutes/);
    const unknown = await call(client, 'extend_environment', {
      environment_id: 'env-nope',
      timeout_minutes: 5,
    });
    expect(errorText(unknown)).toMatch(/does not exist/);
  });
});

describe('read_file of a picture', () => {
  it('returns an MCP image block beside the structured result, so a model can look at it', {
    timeout: 120_000,
  }, async () => {
    // A 1×1 PNG made in the guest.
    await ok(client, 'execute', {
      environment_id: envId,
      code: [
        'import struct, zlib',
        'def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))',
        'png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))',
        'png += chunk(b"IDAT", zlib.compress(b"\\x00\\xff\\x00\\x00")) + chunk(b"IEND", b"")',
        'open("plot.png", "wb").write(png)',
      ].join('\n'),
    });
    const r = await call(client, 'read_file', { environment_id: envId, path: 'plot.png' });
    expect(r.isError).toBeFalsy();
    const image = r.content.find((c) => c.type === 'image');
    expect(image).toMatchObject({ type: 'image', mimeType: 'image/png' });
    expect(
      Buffer.from((image as { data: string }).data, 'base64')
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');
    expect(r.structuredContent).toMatchObject({ encoding: 'base64', mime_type: 'image/png' });
    // Other binaries stay base64 only.
    await ok(client, 'write_file', {
      environment_id: envId,
      path: 'blob.bin',
      content: 'AAECAwQ=',
      encoding: 'base64',
    });
    const blob = await call(client, 'read_file', { environment_id: envId, path: 'blob.bin' });
    expect(blob.content.some((c) => c.type === 'image')).toBe(false);
    expect(blob.structuredContent).toMatchObject({ encoding: 'base64', content: 'AAECAwQ=' });
  });
});

describe('live output and log messages', () => {
  it('puts the latest output line into execute progress, and sends MCP log messages at the level asked for', {
    timeout: 300_000,
  }, async () => {
    const messages: string[] = [];
    const r = await client.callTool(
      {
        name: 'execute',
        arguments: {
          environment_id: envId,
          code: 'import time\nfor i in range(4):\n    print(f"step {i}", flush=True)\n    time.sleep(1)',
        },
      },
      undefined,
      { onprogress: (p) => messages.push(p.message ?? ''), timeout: 120_000 },
    );
    expect(r.isError).toBeFalsy();
    expect(messages.some((m) => /bytes of output: step [0-3]$/.test(m))).toBe(true);

    const logs: Array<{ level: string; data: unknown }> = [];
    other.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      logs.push({ level: n.params.level, data: n.params.data });
    });
    await other.setLoggingLevel('warning');
    const quiet = await ok<{ environment_id: string }>(other, 'create_environment', { runtime: 'python' });
    expect(logs).toEqual([]); // below the level asked for: nothing sent
    await other.setLoggingLevel('info');
    await ok(other, 'destroy_environment', { environment_id: quiet.environment_id });
    const env = await ok<{ environment_id: string }>(other, 'create_environment', { runtime: 'python' });
    const text = logs.map((l) => String(l.data)).join('\n');
    expect(text).toMatch(/create_environment: (scheduled|booting)/);
    expect(text).toContain(`environment ${env.environment_id} is running on ${nodeName} after`);
    expect(logs.every((l) => l.level === 'info')).toBe(true);
    await ok(other, 'destroy_environment', { environment_id: env.environment_id });
  });
});

describe('idle suspend on a real VM', () => {
  it('suspends an idle environment (no QEMU left), and the next execute resumes it with files, installed programs and guest processes intact', {
    timeout: 300_000,
  }, async () => {
    const G = { group: 'waggle.dev', version: 'v1alpha1', plural: 'waggleenvironments', namespace };
    const get = async () =>
      (await custom.getNamespacedCustomObject({ ...G, name: envId })) as {
        status?: { phase?: string; vmId?: string; lastResumeMs?: number };
      };
    // State a resume must bring back: a file, a program "installed" outside the home directory,
    // and a process the guest runs by itself (counting in memory, writing to /tmp).
    await ok(client, 'write_file', { environment_id: envId, path: 'kept.txt', content: 'still here' });
    const setup = await ok<{ exit_code: number }>(client, 'execute', {
      environment_id: envId,
      language: 'shell',
      code: [
        "printf '#!/bin/sh\\necho installed-tool-ok\\n' > ~/.local/bin/mytool 2>/dev/null || (mkdir -p ~/.local/bin && printf '#!/bin/sh\\necho installed-tool-ok\\n' > ~/.local/bin/mytool)",
        'chmod +x ~/.local/bin/mytool',
        "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done' > /dev/null 2>&1 < /dev/null &",
        'sleep 1; cat /tmp/counter',
      ].join('\n'),
    });
    expect(setup.exit_code).toBe(0);

    await custom.patchNamespacedCustomObject(
      {
        ...G,
        name: envId,
        body: { spec: { idleAction: 'Suspend', idleTimeout: '3s' } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const suspended = await waitFor(get, (e) => e.status?.phase === 'Suspended', 'phase Suspended', {
      timeoutMs: 120_000,
    });
    // The guest holds no memory on the node: the agent says suspended and no QEMU of it runs.
    const vmId = suspended.status?.vmId as string;
    const agentClient = createNodeAgentClient(stack.agent.apiUrl);
    const vm = (await agentClient.getVM({ vmId })).vm;
    expect(vm?.state).toBe(VMState.VM_STATE_SUSPENDED);
    const vmsDir = join(stack.stateDir, 'vms');
    let instanceDir = '';
    for (const d of await readdir(vmsDir)) {
      const rec = JSON.parse(await readFile(join(vmsDir, d, 'vm.json'), 'utf8').catch(() => '{}'));
      if (rec.vmId === vmId) instanceDir = join(vmsDir, d);
    }
    expect(instanceDir).not.toBe('');
    const qemu = await run('pgrep', ['-f', `${instanceDir}/`]).catch(() => ({ stdout: '' }));
    expect(qemu.stdout.trim()).toBe('');
    const list = await ok<{ environments: Array<{ environment_id: string; status: string }> }>(
      client,
      'list_environments',
      {},
    );
    expect(list.environments.find((e) => e.environment_id === envId)?.status).toBe('suspended');

    // Keep it from suspending again right after the resume.
    await custom.patchNamespacedCustomObject(
      { ...G, name: envId, body: { spec: { idleTimeout: '30m' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const r = await ok<{ stdout: string; exit_code: number; resumed_in_ms?: number }>(client, 'execute', {
      environment_id: envId,
      language: 'shell',
      code: 'cat kept.txt; echo; ~/.local/bin/mytool; a=$(cat /tmp/counter); sleep 1; b=$(cat /tmp/counter); echo "counter $a $b"',
    });
    expect(r.exit_code).toBe(0);
    expect(r.resumed_in_ms).toBeGreaterThan(0);
    expect(r.stdout).toContain('still here');
    expect(r.stdout).toContain('installed-tool-ok');
    const [, a, b] = r.stdout.match(/counter (\d+) (\d+)/) ?? [];
    expect(Number(a)).toBeGreaterThan(0);
    expect(Number(b)).toBeGreaterThan(Number(a)); // the guest's own process still runs
    const running = await get();
    expect(running.status?.phase).toBe('Running');
    expect(running.status?.lastResumeMs).toBeGreaterThan(0);
    process.stderr.write(`agent-tools: resume seen by execute ${r.resumed_in_ms} ms\n`);
  });
});
