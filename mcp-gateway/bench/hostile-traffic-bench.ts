// Benchmark: an authenticated caller's `list_environments` latency while the gateway is attacked
// with slow-loris connections and unauthenticated large bodies, against the same caller's idle
// latency in the same run; and the gateway process's memory against the chart's limit. Loopback
// only and bounded (the attack runs for the measured calls and at most --max-seconds). Not a
// test: prints JSON.
//   pnpm bench:hostile [--slowloris N] [--bodies N] [--calls N] [--max-seconds S]
//
// Runs a real etcd + kube-apiserver (the integration harness's), the gateway as its own process
// (`node mcp-gateway/src/main.ts`, default configuration, API-key auth), the attacker as another
// process, and the measuring MCP SDK client in this one.

import { type ChildProcess, fork, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { cpus, setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { applyCRDs, connectClient, freePorts, kubeClients, startControlPlane } from '@waggle/test';

const { values } = parseArgs({
  options: {
    slowloris: { type: 'string', default: '500' },
    bodies: { type: 'string', default: '100' },
    calls: { type: 'string', default: '300' },
    rate: { type: 'string', default: '20' },
    'body-pause-ms': { type: 'string', default: '0' },
    'max-seconds': { type: 'string', default: '120' },
    attacker: { type: 'boolean', default: false },
    port: { type: 'string' },
  },
});
const SLOWLORIS = Number(values.slowloris);
const BODIES = Number(values.bodies);
const CALLS = Number(values.calls);
/** Calls per second of the measured caller (paced the same idle and under attack). */
const RATE = Number(values.rate);
/** How long a body worker waits after a refusal before it sends the next body (0: at once). */
const BODY_PAUSE_MS = Number(values['body-pause-ms']);
const MAX_SECONDS = Number(values['max-seconds']);
/** The chart's gateway.resources.limits.memory (512Mi). */
const MEMORY_LIMIT_BYTES = 512 * 1024 * 1024;
/** What each unauthenticated request announces (about the largest legal body). */
const BODY_BYTES = 14_000_000;
const say = (m: string) => process.stderr.write(`bench: ${m}\n`);

if (values.attacker) await attack(Number(values.port));
else await main();

/** The attacker process: keeps SLOWLORIS slow connections and BODIES uploads going until SIGTERM. */
async function attack(port: number): Promise<void> {
  let running = true;
  const deadline = setTimeout(() => stop(), MAX_SECONDS * 1000);
  const s = {
    slowloris: { target: SLOWLORIS, opened: 0, closedByServer: 0, maxOpen: 0, open: 0, longestOpenMs: 0 },
    bodies: {
      workers: BODIES,
      requests: 0,
      status: {} as Record<string, number>,
      errors: 0,
      bytesAnnounced: 0,
      bytesWritten: 0,
    },
  };

  const slow = () => {
    if (!running) return;
    const t0 = Date.now();
    const sock: Socket = connect({ host: '127.0.0.1', port });
    s.slowloris.opened++;
    s.slowloris.open++;
    s.slowloris.maxOpen = Math.max(s.slowloris.maxOpen, s.slowloris.open);
    let timer: NodeJS.Timeout | undefined;
    sock.on('connect', () => {
      sock.write('POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      timer = setInterval(() => sock.writable && sock.write(`X-Slow-${Date.now()}: 1\r\n`), 1000);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearInterval(timer);
      s.slowloris.open--;
      if (running) {
        s.slowloris.closedByServer++;
        s.slowloris.longestOpenMs = Math.max(s.slowloris.longestOpenMs, Date.now() - t0);
        setTimeout(slow, 100);
      }
    });
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  };
  const sockets = new Set<Socket>();

  const chunk = Buffer.alloc(64 * 1024, 0x20);
  const body = async (): Promise<void> => {
    while (running) {
      s.bodies.requests++;
      s.bodies.bytesAnnounced += BODY_BYTES;
      await new Promise<void>((resolve) => {
        let written = 0;
        const req = request({
          host: '127.0.0.1',
          port,
          path: '/mcp',
          method: 'POST',
          agent: false,
          headers: {
            host: '127.0.0.1',
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'content-length': BODY_BYTES,
          },
        });
        const finish = () => {
          s.bodies.bytesWritten += written;
          req.destroy();
          setTimeout(resolve, BODY_PAUSE_MS);
        };
        req.on('response', (res) => {
          const k = String(res.statusCode);
          s.bodies.status[k] = (s.bodies.status[k] ?? 0) + 1;
          res.resume();
          res.on('end', finish);
          res.on('error', finish);
        });
        req.on('error', () => {
          s.bodies.errors++;
          finish();
        });
        const pump = () => {
          while (written < BODY_BYTES) {
            written += chunk.length;
            if (!req.write(chunk)) break;
          }
        };
        req.on('drain', pump);
        pump();
      });
    }
  };

  for (let i = 0; i < SLOWLORIS; i++) setTimeout(slow, (i * 2000) / SLOWLORIS);
  const workers = Array.from({ length: BODIES }, () => body());
  process.send?.({ ready: true });

  function stop() {
    if (!running) return;
    running = false;
    clearTimeout(deadline);
    for (const sock of sockets) sock.destroy();
    void Promise.all(workers).then(() => {
      process.send?.({ stats: s });
      process.exit(0);
    });
  }
  process.on('SIGTERM', stop);
  process.on('message', (m) => {
    if ((m as { stop?: boolean }).stop) stop();
  });
}

function percentiles(ms: number[]) {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] as number;
  const r = (v: number) => Math.round(v * 100) / 100;
  return { n: ms.length, p50: r(at(0.5)), p95: r(at(0.95)), p99: r(at(0.99)), max: r(at(1)) };
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** Bytes the process read (all read syscalls, sockets included) and its CPU seconds. */
async function processCounters(
  pid: number,
): Promise<{ readBytes: number; cpuSeconds: number; systemSeconds: number }> {
  const io = await readFile(`/proc/${pid}/io`, 'utf8');
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the command).
  return {
    readBytes: Number(/rchar: (\d+)/.exec(io)?.[1] ?? 0),
    cpuSeconds: (Number(stat[11]) + Number(stat[12])) / 100,
    systemSeconds: Number(stat[12]) / 100,
  };
}

async function heapUsedBytes(metricsUrl: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  return Number(/^nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1] ?? 0);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'waggle-bench-hostile-'));
  say('starting etcd + kube-apiserver');
  const cp = await startControlPlane({ log: () => undefined });
  let gateway: ChildProcess | undefined;
  let attacker: ChildProcess | undefined;
  try {
    await applyCRDs(cp.kubeconfigPath);
    await kubeClients(cp.kubeconfigPath).core.createNamespace({
      body: { metadata: { name: 'bench-hostile' } },
    });
    const key = `bench-${Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('hex')}`;
    await writeFile(
      join(dir, 'keys.yaml'),
      `keys:\n  - {name: bench, namespace: bench-hostile, key: ${key}}\n`,
    );
    const [port, metricsPort] = (await freePorts(2)) as [number, number];
    const base = `http://127.0.0.1:${port}`;
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    say(`starting the gateway on ${base} (default limits and timeouts)`);
    gateway = spawn(process.execPath, [fileURLToPath(new URL('../src/main.ts', import.meta.url))], {
      env: {
        ...process.env,
        KUBECONFIG: cp.kubeconfigPath,
        WAGGLE_LISTEN_ADDR: `127.0.0.1:${port}`,
        WAGGLE_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
        WAGGLE_API_KEYS_FILE: join(dir, 'keys.yaml'),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const gwPid = gateway.pid as number;
    const deadline = Date.now() + 60_000;
    while ((await fetch(`${base}/readyz`).catch(() => undefined))?.status !== 200) {
      if (Date.now() > deadline) throw new Error('the gateway did not become ready in 60 s');
      await new Promise((r) => setTimeout(r, 200));
    }

    const client = await connectClient(`${base}/mcp`, key, 'bench');
    const measure = async (n: number) => {
      const ms: number[] = [];
      const start = performance.now();
      for (let i = 0; i < n; i++) {
        const due = start + (i * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const t = performance.now();
        const r = await client.callTool({ name: 'list_environments', arguments: {} });
        ms.push(performance.now() - t);
        if (r.isError) throw new Error(`list_environments failed: ${JSON.stringify(r.content)}`);
      }
      return ms;
    };
    await measure(30); // warm-up
    const rssIdle = await rssBytes(gwPid);
    const heapIdle = await heapUsedBytes(metricsUrl);
    say(`idle: ${CALLS} calls`);
    const idleStart = { at: Date.now(), ...(await processCounters(gwPid)) };
    const idle = await measure(CALLS);
    const idleEnd = { at: Date.now(), ...(await processCounters(gwPid)) };

    say(`attack: ${SLOWLORIS} slow-loris connections, ${BODIES} unauthenticated ${BODY_BYTES}-byte bodies`);
    attacker = fork(fileURLToPath(import.meta.url), [
      '--attacker',
      '--port',
      String(port),
      '--slowloris',
      String(SLOWLORIS),
      '--bodies',
      String(BODIES),
      '--max-seconds',
      String(MAX_SECONDS),
      '--body-pause-ms',
      String(BODY_PAUSE_MS),
    ]);
    const attackerStats = new Promise<unknown>((resolve) =>
      attacker?.on('message', (m) => {
        if ((m as { stats?: unknown }).stats) resolve((m as { stats: unknown }).stats);
      }),
    );
    await new Promise<void>((resolve) =>
      attacker?.on('message', (m) => (m as { ready?: boolean }).ready && resolve()),
    );
    // The attacker stands for clients elsewhere: at the lowest CPU priority, so that on a small
    // machine its own work does not count against the gateway (which still serves all of it).
    setPriority(attacker.pid as number, 19);
    const attackT0 = Date.now();
    const attackCounters = await processCounters(gwPid);
    // RSS from /proc (free); the heap only at the end (a /metrics scrape costs the gateway CPU).
    let rssPeak = 0;
    const sampler = setInterval(() => {
      void rssBytes(gwPid).then((v) => {
        rssPeak = Math.max(rssPeak, v);
      });
    }, 250);
    await new Promise((r) => setTimeout(r, 3_000)); // the attack ramps up (slow-loris spread over 2 s)
    const attackStart = Date.now();
    say(`under attack: ${CALLS} calls`);
    const underAttack = await measure(CALLS);
    const attackMs = Date.now() - attackStart + 3_000;
    const attackEnd = await processCounters(gwPid);
    const measuredMs = Date.now() - attackT0;
    clearInterval(sampler);
    const heapAttacked = await heapUsedBytes(metricsUrl);
    attacker.send({ stop: true });
    const stats = await attackerStats;
    const sessions = Number(
      /^waggle_gateway_sessions (\S+)/m.exec(await (await fetch(metricsUrl)).text())?.[1] ?? 0,
    );
    await client.close();

    const idleP = percentiles(idle);
    const attackP = percentiles(underAttack);
    const mib = (b: number) => Math.round((b / 1024 / 1024) * 10) / 10;
    const out = {
      benchmark: 'mcp-gateway under hostile traffic (loopback)',
      when: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      calls: { perPhase: CALLS, perSecond: RATE },
      gateway:
        'node mcp-gateway/src/main.ts, default configuration (headers timeout 10s, request timeout 60s)',
      attack: {
        ...(stats as object),
        durationMs: attackMs,
        bodyPauseMs: BODY_PAUSE_MS,
        gatewayReadBytes: attackEnd.readBytes - attackCounters.readBytes,
        refusedBodiesPerSecond: Math.round(
          ((stats as { bodies: { requests: number } }).bodies.requests / attackMs) * 1000,
        ),
      },
      list_environments_ms: { idle: idleP, underAttack: attackP },
      gatewayCpuPercent: {
        idle: Math.round(
          ((idleEnd.cpuSeconds - idleStart.cpuSeconds) / ((idleEnd.at - idleStart.at) / 1000)) * 100,
        ),
        underAttack: Math.round(
          ((attackEnd.cpuSeconds - attackCounters.cpuSeconds) / (measuredMs / 1000)) * 100,
        ),
        // Kernel time: accepting, reading and closing sockets, and freeing what the attacker
        // pushed into their receive buffers.
        underAttackSystem: Math.round(
          ((attackEnd.systemSeconds - attackCounters.systemSeconds) / (measuredMs / 1000)) * 100,
        ),
      },
      p99Ratio: Math.round((attackP.p99 / idleP.p99) * 100) / 100,
      goalP99Within2x: attackP.p99 <= 2 * idleP.p99,
      memory: {
        limitMiB: mib(MEMORY_LIMIT_BYTES),
        rssIdleMiB: mib(rssIdle),
        rssPeakMiB: mib(rssPeak),
        heapUsedIdleMiB: mib(heapIdle),
        heapUsedAfterAttackMiB: mib(heapAttacked),
        underLimit: rssPeak < MEMORY_LIMIT_BYTES,
      },
      gatewaySessionsAfter: sessions,
    };
    console.log(JSON.stringify(out, null, 2));
  } finally {
    attacker?.kill('SIGKILL');
    gateway?.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    gateway?.kill('SIGKILL');
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
