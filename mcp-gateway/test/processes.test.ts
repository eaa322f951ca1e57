import type { CustomObjectsApi } from '@kubernetes/client-node';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { createNodeAgentClient } from '@waggle/node-agent/client';
import { type AgentProcess, call, errorText, ok, type ToolResult, waitFor } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type RealStack, startRealStack } from './real-stack.ts';

// Background processes through the whole stack: the SDK client → gateway → a real node-agent
// process → a TCG microVM, with a real operator. execute background: true, process_output,
// kill_process, their bad inputs, and processes ending with their environment.

let stack: RealStack;
let agent: AgentProcess;
let custom: CustomObjectsApi;
let client: Client;
let namespace: string;

interface Output {
  process_id: string;
  status: 'running' | 'exited' | 'killed';
  stdout: string;
  stderr: string;
  next_since: number;
  dropped_bytes: number;
  more: boolean;
  running: boolean;
  exit_code: number | null;
  killed: boolean;
  stdout_bytes: number;
  stderr_bytes: number;
  started_at: string;
  ended_at?: string;
  message?: string;
}

const errorCode = (r: ToolResult) => (r._meta as Record<string, unknown> | undefined)?.['waggle.dev/error'];

beforeAll(async () => {
  stack = await startRealStack({
    kubeconfigPath: inject('kubeconfigPath'),
    name: 'procs',
    vmNetworkCidr: '10.253.221.0/24',
    tenants: ['dev'],
  });
  ({ agent, custom } = stack);
  client = stack.tenants.dev?.client as Client;
  namespace = stack.tenants.dev?.namespace as string;
}, 900_000);

afterAll(async () => {
  await stack?.close();
});

describe('background processes through MCP (real operator, node-agent and TCG microVMs)', () => {
  it('runs a loop in the background, reads it incrementally, kills a sleeper, refuses bad ids, ends with its environment', {
    timeout: 600_000,
  }, async () => {
    const { tools } = await client.listTools();
    for (const name of ['process_output', 'kill_process']) {
      expect(tools.find((t) => t.name === name)?.outputSchema, name).toBeDefined();
    }
    const [a, b] = await Promise.all([
      ok<{ environment_id: string }>(client, 'create_environment', { runtime: 'python', name: 'dev-a' }),
      ok<{ environment_id: string }>(client, 'create_environment', { runtime: 'python', name: 'dev-b' }),
    ]);
    const A = a.environment_id;
    const B = b.environment_id;

    // execute background: true returns at once with a process id (the loop takes 3 s).
    const loop = [
      'import sys, time',
      'for i in range(6):',
      "    print(f'tick {i}', flush=True)",
      '    time.sleep(0.5)',
      "print('bye', file=sys.stderr, flush=True)",
      'sys.exit(3)',
    ].join('\n');
    const t0 = Date.now();
    const started = await ok<Record<string, unknown>>(client, 'execute', {
      environment_id: A,
      code: loop,
      background: true,
    });
    expect(Date.now() - t0).toBeLessThan(2_500);
    expect(started).toMatchObject({
      background: true,
      process_id: expect.stringMatching(/^proc-[0-9a-f]{16}$/),
      status: 'running',
      started_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    expect(started).not.toHaveProperty('stdout');
    const pid = started.process_id as string;

    // Incremental reads: each call passes the previous next_since and waits for something new.
    const answers: Output[] = [];
    let since = 0;
    for (let i = 0; i < 100; i++) {
      const r = await ok<Output>(client, 'process_output', {
        environment_id: A,
        process_id: pid,
        since,
        wait_seconds: 5,
      });
      answers.push(r);
      since = r.next_since;
      if (!r.running) break;
    }
    expect(answers.filter((r) => r.stdout !== '').length).toBeGreaterThan(1);
    expect(answers.map((r) => r.stdout).join('')).toBe('tick 0\ntick 1\ntick 2\ntick 3\ntick 4\ntick 5\n');
    expect(answers.map((r) => r.stderr).join('')).toBe('bye\n');
    const last = answers.at(-1) as Output;
    expect(last).toMatchObject({
      status: 'exited',
      running: false,
      exit_code: 3,
      killed: false,
      dropped_bytes: 0,
      more: false,
      stdout_bytes: 42,
      stderr_bytes: 4,
      next_since: 46,
      ended_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    // From 0 again: everything is still kept.
    const again = await ok<Output>(client, 'process_output', { environment_id: A, process_id: pid });
    expect(again).toMatchObject({ stdout: 'tick 0\ntick 1\ntick 2\ntick 3\ntick 4\ntick 5\n', exit_code: 3 });

    // kill_process stops a shell sleeping 600 s, and what it started.
    const sleeper = await ok<{ process_id: string }>(client, 'execute', {
      environment_id: A,
      code: 'sleep 600 &\necho started\nsleep 600',
      language: 'shell',
      background: true,
    });
    const up = await ok<Output>(client, 'process_output', {
      environment_id: A,
      process_id: sleeper.process_id,
      wait_seconds: 10,
    });
    expect(up).toMatchObject({ stdout: 'started\n', status: 'running', running: true, exit_code: null });
    const count = 'pgrep -u sandbox -fc "^sleep 60[0]$" || true';
    const before = await ok<{ stdout: string }>(client, 'execute', {
      environment_id: A,
      code: count,
      language: 'shell',
    });
    expect(before.stdout).toBe('2\n');
    const killed = await ok(client, 'kill_process', { environment_id: A, process_id: sleeper.process_id });
    expect(killed).toEqual({ process_id: sleeper.process_id, status: 'killed', exit_code: null });
    const after = await ok<{ stdout: string }>(client, 'execute', {
      environment_id: A,
      code: count,
      language: 'shell',
    });
    expect(after.stdout).toBe('0\n');
    expect(
      await ok<Output>(client, 'process_output', { environment_id: A, process_id: sleeper.process_id }),
    ).toMatchObject({ status: 'killed', killed: true, running: false, exit_code: null });
    expect(await ok(client, 'kill_process', { environment_id: A, process_id: sleeper.process_id })).toEqual({
      process_id: sleeper.process_id,
      status: 'already_exited',
      exit_code: null,
    });
    expect(await ok(client, 'kill_process', { environment_id: A, process_id: pid })).toEqual({
      process_id: pid,
      status: 'already_exited',
      exit_code: 3,
    });

    // Bad inputs: isError results that say what to do.
    const unknown = await call(client, 'process_output', {
      environment_id: A,
      process_id: 'proc-0123456789abcdef',
    });
    expect(unknown.isError).toBe(true);
    expect(errorCode(unknown)).toBe('process_not_found');
    expect(errorText(unknown)).toBe(
      `process "proc-0123456789abcdef" does not exist in environment "${A}" (its processes: ${pid}, ` +
        `${sleeper.process_id}). Use a process_id that execute with background: true returned for this environment.`,
    );
    const foreign = await call(client, 'process_output', { environment_id: B, process_id: pid });
    expect(foreign.isError).toBe(true);
    expect(errorCode(foreign)).toBe('process_not_found');
    expect(errorText(foreign)).toMatch(
      new RegExp(
        `process "${pid}" does not exist in environment "${B}" \\(no background process is known there: none was started, or its node-agent restarted since`,
      ),
    );
    const killUnknown = await call(client, 'kill_process', {
      environment_id: A,
      process_id: 'proc-0123456789abcdef',
    });
    expect(killUnknown.isError).toBe(true);
    expect(errorCode(killUnknown)).toBe('process_not_found');
    for (const [args, re] of [
      [{ process_id: pid, since: -1 }, /- since: since must be 0 or more/],
      [{ process_id: pid, since: 47 }, /since 47 is past the end of the output \(46 bytes so far\)/],
      [{ process_id: pid, wait_seconds: 60 }, /- wait_seconds: wait_seconds must be at most 30/],
      [
        { process_id: 'my-process' },
        /- process_id: process_id must be one that execute with background: true/,
      ],
    ] as Array<[Record<string, unknown>, RegExp]>) {
      const r = await call(client, 'process_output', { environment_id: A, ...args });
      expect(r.isError, JSON.stringify(args)).toBe(true);
      expect(errorCode(r)).toBe('invalid_argument');
      expect(errorText(r)).toMatch(re);
    }
    const withTimeout = await call(client, 'execute', {
      environment_id: A,
      code: 'print(1)',
      background: true,
      timeout_seconds: 10,
    });
    expect(withTimeout.isError).toBe(true);
    expect(errorText(withTimeout)).toMatch(
      /timeout_seconds: does not apply with background: true.*leave it out/,
    );

    // Processes end with their environment: destroy B while one runs there.
    const doomed = await ok<{ process_id: string }>(client, 'execute', {
      environment_id: B,
      code: 'echo up; sleep 600',
      language: 'shell',
      background: true,
    });
    const vmOfB = (
      (await custom.getNamespacedCustomObject({
        group: 'waggle.dev',
        version: 'v1alpha1',
        plural: 'waggleenvironments',
        namespace,
        name: B,
      })) as { status?: { vmId?: string } }
    ).status?.vmId as string;
    await ok(client, 'destroy_environment', { environment_id: B });
    const gone = await call(client, 'process_output', { environment_id: B, process_id: doomed.process_id });
    expect(gone.isError).toBe(true);
    expect(errorCode(gone)).toBe('environment_not_found');
    expect(errorText(gone)).toMatch(/environment ".*" does not exist/);
    const nodeAgent = createNodeAgentClient(agent.apiUrl);
    await waitFor(
      async () => (await nodeAgent.listVMs({})).vms.map((v) => v.spec?.vmId),
      (ids) => !ids.includes(vmOfB),
      "B's VM to be destroyed on the node",
      { timeoutMs: 60_000 },
    );
    // On the node, the process is gone with the VM.
    const direct = await nodeAgent.readProcessOutput({ vmId: vmOfB, processId: doomed.process_id }).then(
      () => 'answered',
      (err: { code?: number }) => err.code,
    );
    expect(direct).toBe(5); // NotFound: no such VM

    await ok(client, 'destroy_environment', { environment_id: A });
  });
});
