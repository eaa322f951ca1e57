import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureGuestImages, waitFor } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent.ts';
import {
  Code,
  ConnectError,
  classifyNodeAgentError,
  createNodeAgentClient,
  type NodeAgentClient,
  ProcessNotFoundReason,
  type ReadProcessOutputResponse,
} from '../src/client.ts';
import { PROCESS_LIMITS } from '../src/guest/processes.ts';
import { type GuestConnections, runCommand } from '../src/guest/ssh-connections.ts';
import { createMetrics } from '../src/metrics.ts';
import { startServers } from '../src/server.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import type { VMNetworks } from '../src/vm/network/vm-network.ts';
import type { GuestImages, VMManager } from '../src/vm/vm-manager.ts';
import { pythonSpec, testAgent, testConnections, testManager, testNetworks } from './vm-fixtures.ts';

// Background processes (StartProcess / ReadProcessOutput / KillProcess) through the real API
// edge: an in-process Agent served by the agent's own ConnectRPC server, real TCG VMs. A is used
// throughout; B is filled to the process limit and destroyed with its processes running.

/** Output kept per process here (the agent's output limit; 1 MiB in production). */
const RING = 256 << 10;
const A = 'procs-a';
const B = 'procs-b';

let stateDir = '';
let images: GuestImages;
let networks: VMNetworks;
let vms: VMManager;
let agent: Agent;
let servers: Awaited<ReturnType<typeof startServers>>;
let client: NodeAgentClient;
/** The test's own root connections, to look at the guests from outside the sandbox. */
let inspect: GuestConnections;

async function asRoot(vmId: string, command: string): Promise<string> {
  const r = await runCommand(await inspect.get(vmId), command, undefined, { timeoutMs: 30_000 });
  return r.stdout.toString();
}

/** The Connect error a call fails with. */
async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error('the call succeeded but should have failed');
}

const read = (vmId: string, processId: string, since = 0n, waitMs = 0, maxBytes = 0) =>
  client.readProcessOutput({ vmId, processId, since, waitMs, maxBytes });

/** Reads from a cursor until the process has ended, long-polling; returns every answer. */
async function readToEnd(vmId: string, processId: string): Promise<ReadProcessOutputResponse[]> {
  const answers: ReadProcessOutputResponse[] = [];
  let since = 0n;
  for (let i = 0; i < 200; i++) {
    const r = await read(vmId, processId, since, 5_000);
    answers.push(r);
    since = r.nextSince;
    if (!r.running && !r.more) return answers;
  }
  throw new Error('the process did not end');
}

beforeAll(async () => {
  images = await ensureGuestImages(['python']);
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-processes-test-'));
  networks = await testNetworks('10.253.220.0/24');
  vms = testManager({ stateDir, images, networks, tscKHz: await readHostTscKHz() });
  await Promise.all([vms.create(pythonSpec(A)), vms.create(pythonSpec(B))]);
  agent = testAgent(vms, 'processes-test', { maxOutputBytes: RING });
  servers = await startServers({
    agent,
    metrics: createMetrics(),
    listen: '127.0.0.1:0',
    opsListen: '127.0.0.1:0',
    isReady: () => true,
  });
  client = createNodeAgentClient(servers.apiUrl);
  inspect = testConnections(vms);
  // Connected now, while the guests are idle: a handshake with a guest busy starting many
  // processes under TCG can take longer than the connect timeout.
  await Promise.all([asRoot(A, 'true'), asRoot(B, 'true')]);
}, 900_000);

afterAll(async () => {
  await servers?.close();
  agent?.close();
  inspect?.closeAll();
  if (vms) for (const vm of vms.list()) await vms.destroyInstance(vm.instanceId);
  await networks?.removeHostTable();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

describe('background processes (real agent API, real VMs)', () => {
  it('starts at once; output is read incrementally with a cursor; the exit code is kept', {
    timeout: 120_000,
  }, async () => {
    const code = [
      'import sys, time',
      'for i in range(5):',
      "    print(f'line {i}', flush=True)",
      '    time.sleep(0.6)',
      "print('done', file=sys.stderr, flush=True)",
      'sys.exit(4)',
    ].join('\n');
    const t0 = Date.now();
    const started = await client.startProcess({ vmId: A, code, language: 'python' });
    expect(Date.now() - t0).toBeLessThan(2_500); // the loop alone takes 3 s
    expect(started.processId).toMatch(/^proc-[0-9a-f]{16}$/);
    expect(Date.parse(started.startedAt)).toBeGreaterThan(t0 - 1_000);

    const answers = await readToEnd(A, started.processId);
    // Lines came in more than one answer: each read returned what was new since its cursor.
    expect(answers.filter((a) => a.stdout.length > 0).length).toBeGreaterThan(1);
    expect(answers.map((a) => a.stdout).join('')).toBe('line 0\nline 1\nline 2\nline 3\nline 4\n');
    expect(answers.map((a) => a.stderr).join('')).toBe('done\n');
    for (const [i, a] of answers.entries()) {
      if (i > 0)
        expect(a.nextSince).toBeGreaterThanOrEqual((answers[i - 1] as ReadProcessOutputResponse).nextSince);
      expect(a.droppedBytes).toBe(0n);
    }
    const last = answers.at(-1) as ReadProcessOutputResponse;
    expect(last).toMatchObject({
      running: false,
      exitCode: 4,
      killed: false,
      stdoutBytes: 35n,
      stderrBytes: 5n,
      nextSince: 40n,
      language: 'python',
      message: 'exited with code 4',
    });
    expect(Date.parse(last.endedAt)).toBeGreaterThanOrEqual(Date.parse(last.startedAt));

    // Everything is still there from 0, nothing after the end, and a cursor past it is refused.
    expect((await read(A, started.processId)).stdout).toBe('line 0\nline 1\nline 2\nline 3\nline 4\n');
    expect(await read(A, started.processId, 40n, 5_000)).toMatchObject({
      stdout: '',
      stderr: '',
      more: false,
    });
    const past = await failure(read(A, started.processId, 41n));
    expect(past.code).toBe(Code.InvalidArgument);
    expect(past.rawMessage).toMatch(
      /since 41 is past the end of the output \(40 bytes so far\); pass the next_since/,
    );
    // KillProcess of an exited process: nothing to kill, the exit code says how it ended.
    expect(await client.killProcess({ vmId: A, processId: started.processId })).toMatchObject({
      wasRunning: false,
      exitCode: 4,
    });
  });

  it('keeps a bounded ring of a flood: dropped bytes counted, totals right, newest bytes kept', {
    timeout: 180_000,
  }, async () => {
    const total = 4 << 20; // 16 times the ring
    const code = [
      'import sys',
      'block = b"x" * 65535 + b"\\n"',
      `for _ in range(${total / 65536}): sys.stdout.buffer.write(block)`,
      'sys.stdout.flush()',
      "sys.stderr.write('tail\\n')",
    ].join('\n');
    const { processId } = await client.startProcess({ vmId: A, code, language: 'python' });
    // Nobody reads while it prints: the ring drops the oldest output.
    await waitFor(
      () => read(A, processId, 0n, 0, 1),
      (r) => !r.running,
      'the flood to end',
      { timeoutMs: 150_000, intervalMs: 500 },
    );
    const r = await read(A, processId);
    expect(r).toMatchObject({ running: false, exitCode: 0, stdoutBytes: BigInt(total), stderrBytes: 5n });
    expect(r.stdout.length + r.stderr.length).toBe(RING);
    expect(r.droppedBytes).toBe(BigInt(total + 5 - RING));
    expect(r.nextSince).toBe(BigInt(total + 5));
    expect(r.more).toBe(false);
    expect(r.stderr).toBe('tail\n');
    expect(r.stdout.endsWith('xxxx\n')).toBe(true);
    // Paged: max_bytes bounds an answer, `more` says there is more after it.
    const page = await read(A, processId, r.nextSince - 100n, 0, 40);
    expect(page).toMatchObject({ more: true, nextSince: r.nextSince - 60n, droppedBytes: 0n });
    expect(page.stdout.length).toBe(40);
  });

  it('kills a process and everything it forked; a silent one long-polls until the wait ends', {
    timeout: 120_000,
  }, async () => {
    const code = [
      'sleep 6001 &',
      'nohup sleep 6002 > /dev/null 2>&1 &',
      '( sleep 6003 & )',
      "python3 -c 'import time; time.sleep(6004)' &",
      'echo started',
      'sleep 6005',
    ].join('\n');
    const { processId } = await client.startProcess({ vmId: A, code, language: 'shell' });
    const first = await read(A, processId, 0n, 10_000);
    expect(first).toMatchObject({ stdout: 'started\n', running: true });
    await waitFor(
      () => asRoot(A, 'pgrep -u sandbox -f "sleep.*600[0-9]" | wc -l'),
      (n) => n.trim() === '5',
      'the five sleepers to run in the guest',
      { timeoutMs: 30_000 },
    );
    // Nothing new: the read waits for wait_ms, then answers with no output.
    const t0 = Date.now();
    const idle = await read(A, processId, first.nextSince, 1_500);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_400);
    expect(idle).toMatchObject({ stdout: '', running: true, nextSince: first.nextSince });
    // A read waiting when the kill comes returns at once with the end.
    const waiting = read(A, processId, first.nextSince, 25_000);

    expect(await client.killProcess({ vmId: A, processId })).toMatchObject({ wasRunning: true });
    expect((await client.killProcess({ vmId: A, processId })).exitCode).toBeUndefined();
    const ended = await waiting;
    expect(ended).toMatchObject({ running: false, killed: true, message: 'stopped by KillProcess' });
    expect(ended.exitCode).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(await asRoot(A, 'pgrep -u sandbox -f "sleep.*600[0-9]" | wc -l')).toBe('0\n');
    // Its files are gone from the exec dir.
    expect(await asRoot(A, `ls /run/waggle/exec | grep -c ${processId} || true`)).toBe('0\n');
    expect(await client.killProcess({ vmId: A, processId })).toMatchObject({ wasRunning: false });
  });

  it('answers unknown process ids and bad requests with errors that say what to do', async () => {
    const known = (await client.startProcess({ vmId: A, code: 'true', language: 'shell' })).processId;
    const unknown = await failure(read(A, 'proc-0123456789abcdef'));
    expect(unknown.code).toBe(Code.NotFound);
    const unknownProcess = classifyNodeAgentError(unknown);
    expect(unknownProcess.kind).toBe('process-not-found');
    if (unknownProcess.kind === 'process-not-found') {
      expect(unknownProcess.detail.reason).toBe(ProcessNotFoundReason.NOT_FOUND);
      expect(unknownProcess.detail.knownProcessIds).toContain(known);
    }
    expect(unknown.rawMessage).toMatch(
      /^no background process "proc-0123456789abcdef" in this VM; its processes: .*\(/,
    );
    const kill = await failure(client.killProcess({ vmId: A, processId: 'nonsense' }));
    expect(kill.code).toBe(Code.NotFound);
    expect(classifyNodeAgentError(kill).kind).toBe('process-not-found');
    // A's process is unknown in B.
    const elsewhere = await failure(read(B, known));
    expect(elsewhere.code).toBe(Code.NotFound);
    expect(elsewhere.rawMessage).toMatch(/none has been started in it/);
    // An unknown VM is NotFound without the process detail (callers tell the two apart).
    const noVM = await failure(read('no-such-vm', known));
    expect(noVM.code).toBe(Code.NotFound);
    expect(classifyNodeAgentError(noVM).kind).toBe('vm-not-found');
    const lang = await failure(client.startProcess({ vmId: A, code: 'x', language: 'cobol' }));
    expect(lang.code).toBe(Code.InvalidArgument);
    expect(lang.rawMessage).toMatch(/language "cobol" is not supported; use python, node or shell/);
    const empty = await failure(client.startProcess({ vmId: A, code: '', language: '' }));
    expect(empty.code).toBe(Code.InvalidArgument);
    expect(empty.rawMessage).toMatch(/code is empty/);
  });

  it('bounds running processes per VM, and they die with their VM', { timeout: 120_000 }, async () => {
    const ids: string[] = [];
    for (let i = 0; i < PROCESS_LIMITS.maxRunning; i++) {
      ids.push(
        (await client.startProcess({ vmId: B, code: `echo ${i}; sleep 700${i}`, language: 'shell' }))
          .processId,
      );
    }
    const full = await failure(client.startProcess({ vmId: B, code: 'sleep 1', language: 'shell' }));
    expect(full.code).toBe(Code.ResourceExhausted);
    expect(full.rawMessage).toMatch(
      new RegExp(`^${PROCESS_LIMITS.maxRunning} background processes already run in this VM.*KillProcess`),
    );
    await waitFor(
      () => asRoot(B, 'pgrep -u sandbox -f "sleep 70" | wc -l').catch((err: Error) => err.message),
      (n) => n.trim() === String(PROCESS_LIMITS.maxRunning),
      'every sleeper to run in the guest',
      { timeoutMs: 60_000 },
    );
    const last = ids.at(-1) as string;
    const lastOut = await read(B, last, 0n, 10_000);
    expect(lastOut.stdout).toBe(`${PROCESS_LIMITS.maxRunning - 1}\n`);
    // A read waiting when the VM is destroyed ends at once, and the records go with the VM.
    const waiting = read(B, last, lastOut.nextSince, 25_000).catch((err: unknown) => err);
    await new Promise((r) => setTimeout(r, 1_000)); // the read is waiting in the agent
    const t0 = Date.now();
    expect(await client.destroyVM({ vmId: B })).toMatchObject({ existed: true });
    const ended = await waiting;
    expect(ended).toMatchObject({ running: false, killed: true, message: 'its VM was destroyed' });
    expect(Date.now() - t0).toBeLessThan(20_000);
    const gone = await failure(read(B, last));
    expect(gone.code).toBe(Code.NotFound);
    expect(classifyNodeAgentError(gone).kind).toBe('vm-not-found');
    // A's processes are not affected.
    const stillA = await client.startProcess({ vmId: A, code: 'print("a")', language: 'python' });
    expect((await readToEnd(A, stillA.processId)).map((r) => r.stdout).join('')).toBe('a\n');
  });
});

describe('ForwardPort (preview URL tunnels) through the real API edge', () => {
  it('refuses a closed port clearly, and frees a tunnel cancelled while the guest floods it', {
    timeout: 120_000,
  }, async () => {
    const closed = await failure(
      (async () => {
        for await (const _ of client.forwardPort(
          (async function* () {
            yield { msg: { case: 'open' as const, value: { vmId: A, port: 9 } } };
          })(),
        ));
      })(),
    );
    expect(closed.code).toBe(Code.FailedPrecondition);
    const refused = classifyNodeAgentError(closed);
    expect(refused.kind === 'port-not-listening' && refused.detail.port).toBe(9);
    expect(closed.rawMessage).toMatch(/nothing is listening on port 9/);

    // A guest server that writes without end to whoever connects.
    const flood = await client.startProcess({
      vmId: A,
      language: 'python',
      code: [
        'import socket, threading',
        's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
        "s.bind(('127.0.0.1', 9100)); s.listen(16)",
        'def pour(c):',
        '    try:',
        "        while True: c.sendall(b'x' * 65536)",
        '    except OSError: c.close()',
        'while True:',
        '    c, _ = s.accept(); threading.Thread(target=pour, args=(c,), daemon=True).start()',
      ].join('\n'),
    });
    for (let i = 0; i < 3; i++) {
      const abort = new AbortController();
      let first: string | undefined;
      await waitFor(
        async () => {
          try {
            for await (const m of client.forwardPort(
              (async function* () {
                yield { msg: { case: 'open' as const, value: { vmId: A, port: 9100 } } };
                await new Promise(() => undefined); // keep the request side open
              })(),
              { signal: abort.signal },
            )) {
              first = m.msg.case;
              if (m.msg.case === 'data') break; // stop reading while the guest still pours
            }
            return true;
          } catch {
            return false;
          }
        },
        (ok) => ok,
        'the flooding server to accept',
        { timeoutMs: 30_000, intervalMs: 500 },
      );
      abort.abort();
      expect(first).toBe('data');
    }
    await waitFor(
      async () => agent.openTunnels(A),
      (n) => n === 0,
      'every cancelled tunnel to release its slot',
      { timeoutMs: 10_000 },
    );
    await client.killProcess({ vmId: A, processId: flood.processId });
  });
});
