import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AgentProcess, applyCRDs, freePorts, kubeClients, startAgentProcess } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  Code,
  ConnectError,
  classifyNodeAgentError,
  createNodeAgentClient,
  Egress,
  type ExecResult,
  FileErrorKind,
  type NodeAgentClient,
  Runtime,
} from '../src/client.ts';
import { pidsWithMarker } from '../src/vm/proc.ts';

const kubeconfigPath = inject('kubeconfigPath');
let stateDir = '';
let ports: number[] = [];
let agent: AgentProcess | undefined;
let client: NodeAgentClient;
const nodeName = `agent-test-${process.pid}`;

async function startAgent(): Promise<void> {
  const [apiPort, opsPort] = ports as [number, number];
  agent = await startAgentProcess({
    apiPort,
    opsPort,
    env: {
      KUBECONFIG: kubeconfigPath,
      WAGGLE_NODE_NAME: nodeName,
      WAGGLE_STATE_DIR: stateDir,
      WAGGLE_VM_NETWORK_CIDR: '10.253.25.0/24',
      WAGGLE_HEARTBEAT_INTERVAL: '1s',
      WAGGLE_GUEST_RUNTIMES: 'python,shell',
    },
  });
}

async function killAgent(signal: NodeJS.Signals): Promise<void> {
  await agent?.kill(signal);
}

const spec = (vmId: string, runtime: Runtime) => ({
  vmId,
  runtime,
  cpus: 1,
  memoryMib: 512,
  diskMib: 1024,
  egress: Egress.ALL,
});

async function exec(vmId: string, code: string, language = '', timeoutMs = 30_000) {
  const chunks: string[] = [];
  let result: ExecResult | undefined;
  for await (const msg of client.exec({ vmId, code, language, timeoutMs })) {
    if (msg.event.case === 'stdout') chunks.push(Buffer.from(msg.event.value).toString());
    if (msg.event.case === 'result') result = msg.event.value;
  }
  if (!result) throw new Error('no result message');
  return { chunks, result };
}

async function connectCode(p: Promise<unknown> | AsyncIterable<unknown>): Promise<Code> {
  try {
    if (Symbol.asyncIterator in p) for await (const _ of p);
    else await p;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  throw new Error('the call succeeded but should have failed');
}

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-agent-api-'));
  ports = await freePorts(2);
  await startAgent();
  client = createNodeAgentClient(`http://127.0.0.1:${ports[0]}`);
}, 900_000);

afterAll(async () => {
  for (const vm of (await client.listVMs({}).catch(() => ({ vms: [] }))).vms) {
    await client.destroyVM({ vmId: vm.spec?.vmId ?? '' }).catch(() => undefined);
  }
  await killAgent('SIGTERM');
  // WaggleNodes are cluster-scoped: remove ours once the agent can no longer re-register it, so
  // later test files never see a "healthy" node whose endpoint is gone.
  await kubeClients(kubeconfigPath)
    .custom.deleteClusterCustomObject({
      group: 'waggle.dev',
      version: 'v1alpha1',
      plural: 'wagglenodes',
      name: nodeName,
    })
    .catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
});

describe('node-agent over ConnectRPC (real process, real VMs)', () => {
  it('creates VMs, streams exec, moves files, and survives kill -9 of the agent', {
    timeout: 400_000,
  }, async () => {
    const [a, b] = await Promise.all([
      client.createVM({ spec: spec('api-py', Runtime.PYTHON) }),
      client.createVM({ spec: spec('api-sh', Runtime.SHELL) }),
    ]);
    expect(a.vm?.spec?.vmId).toBe('api-py');
    expect(b.vm?.bootMs).toBeGreaterThan(0);

    const py = await exec('api-py', 'import sys\nfor i in range(3): print(i, flush=True)\nsys.exit(2)');
    expect(py.chunks.join('')).toBe('0\n1\n2\n');
    expect(py.result).toMatchObject({ stdout: '0\n1\n2\n', exitCode: 2, timedOut: false });

    // A guest that floods stdout: the stream carries no more than the result's cap (64 KiB here).
    let streamed = 0;
    let flood: ExecResult | undefined;
    for await (const msg of client.exec({
      vmId: 'api-sh',
      code: 'head -c 20000000 /dev/zero | tr "\\0" x',
      timeoutMs: 120_000,
      maxOutputBytes: 65_536,
    })) {
      if (msg.event.case === 'stdout') streamed += msg.event.value.length;
      if (msg.event.case === 'result') flood = msg.event.value;
    }
    expect(streamed).toBe(65_536);
    expect(flood).toMatchObject({ stdoutTruncated: true, exitCode: 0 });
    expect(Number(flood?.stdoutBytes)).toBe(20_000_000);

    const content = Buffer.from('col1,col2\n1,2\n');
    const w = await client.writeFile({ vmId: 'api-py', path: 'in/data.csv', content });
    expect(w).toMatchObject({ path: '/home/sandbox/in/data.csv', bytesWritten: BigInt(content.length) });
    const r = await client.readFile({ vmId: 'api-py', path: 'in/data.csv' });
    expect(Buffer.from(r.content).equals(content)).toBe(true);
    const l = await client.listFiles({ vmId: 'api-py', path: 'in' });
    expect(l.entries.map((e) => e.name)).toEqual(['data.csv']);

    // Errors come back with specific Connect codes.
    expect(await connectCode(client.getVM({ vmId: 'nope' }))).toBe(Code.NotFound);
    expect(await connectCode(client.readFile({ vmId: 'api-py', path: 'missing' }))).toBe(Code.NotFound);
    expect(await connectCode(client.readFile({ vmId: 'api-py', path: 'in' }))).toBe(Code.FailedPrecondition);
    // File errors carry their typed detail, so a missing file is never read as a missing VM.
    for (const [path, kind, at] of [
      ['missing', FileErrorKind.NOT_FOUND, '/home/sandbox/missing'],
      ['in', FileErrorKind.IS_DIRECTORY, '/home/sandbox/in'],
    ] as const) {
      const f = classifyNodeAgentError(
        await client.readFile({ vmId: 'api-py', path }).catch((e: unknown) => e),
      );
      expect(f.kind === 'file' && { kind: f.detail.kind, path: f.detail.path }, path).toEqual({
        kind,
        path: at,
      });
    }
    expect(await connectCode(client.readFile({ vmId: 'api-py', path: '/etc/passwd' }))).toBe(
      Code.InvalidArgument,
    );
    expect(await connectCode(client.installPackages({ vmId: 'api-py', packages: ['$(reboot)'] }))).toBe(
      Code.InvalidArgument,
    );
    expect(await connectCode(client.createVM({ spec: spec('Bad_Id', Runtime.PYTHON) }))).toBe(
      Code.InvalidArgument,
    );
    expect(await connectCode(client.createVM({ spec: { ...spec('api-py', Runtime.PYTHON), cpus: 2 } }))).toBe(
      Code.AlreadyExists,
    );

    const timed = await exec('api-sh', 'echo before; sleep 60', '', 2_000);
    expect(timed.result).toMatchObject({ stdout: 'before\n', timedOut: true });
    expect(timed.result.exitCode).toBeUndefined();

    // kill -9 the agent: VMs keep running and are re-adopted by the next agent process.
    await killAgent('SIGKILL');
    await startAgent();
    const listed = await client.listVMs({});
    expect(listed.vms.map((v) => v.spec?.vmId).sort()).toEqual(['api-py', 'api-sh']);
    expect((await exec('api-sh', 'echo still here')).result.stdout).toBe('still here\n');
    expect((await exec('api-py', 'print(open("in/data.csv").read().strip())')).result.stdout).toBe(
      'col1,col2\n1,2\n',
    );

    const metrics = await (await fetch(`http://127.0.0.1:${ports[1]}/metrics`)).text();
    expect(metrics).toMatch(/^waggle_agent_vms 2$/m);
    expect(metrics).toMatch(/^waggle_agent_rpcs_total\{method="Exec",code="ok"\} \d+$/m);
    expect((await fetch(`http://127.0.0.1:${ports[1]}/readyz`)).status).toBe(200);

    const info = await client.getNodeInfo({});
    expect(info).toMatchObject({ nodeName, accelerator: 'tcg', allocatedVms: 2 });

    expect((await client.destroyVM({ vmId: 'api-py' })).existed).toBe(true);
    expect((await client.destroyVM({ vmId: 'api-py' })).existed).toBe(false);
    await client.destroyVM({ vmId: 'api-sh' });
    expect((await client.listVMs({})).vms).toEqual([]);
    expect(await pidsWithMarker(`${stateDir}/vms/`)).toEqual([]);
  });

  it('registers its WaggleNode and keeps the heartbeat fresh', { timeout: 60_000 }, async () => {
    const api = kubeClients(kubeconfigPath).custom;
    const get = async () =>
      (await api.getClusterCustomObject({
        group: 'waggle.dev',
        version: 'v1alpha1',
        plural: 'wagglenodes',
        name: nodeName,
      })) as {
        status: Record<string, unknown> & {
          lastHeartbeatTime: string;
          conditions: Array<{ type: string; status: string }>;
        };
      };
    const first = await get();
    expect(first.status).toMatchObject({
      endpoint: `http://127.0.0.1:${ports[0]}`,
      accelerator: 'tcg',
      runtimes: ['python', 'shell'],
      capacity: { vms: 8 },
    });
    expect(first.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
    await new Promise((r) => setTimeout(r, 2_500));
    const second = await get();
    expect(Date.parse(second.status.lastHeartbeatTime)).toBeGreaterThan(
      Date.parse(first.status.lastHeartbeatTime),
    );
    await api.deleteClusterCustomObject({
      group: 'waggle.dev',
      version: 'v1alpha1',
      plural: 'wagglenodes',
      name: nodeName,
    });
  });
});
