import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { CLUSTER } from '../src/cluster/layout.ts';
import { connectClient, ok } from '../src/mcp-client.ts';
import { qemuPidsByVmId } from '../src/node-vms.ts';
import { RELEASE, RELEASE_NAMESPACE } from '../src/stack.ts';
import { waitFor } from '../src/wait.ts';
import { type Agent, kubectlFor, newAgent, text } from './agents.ts';

const kubeconfig = inject('e2eKubeconfig');
const k = kubectlFor(kubeconfig);
const run = randomBytes(2).toString('hex');
const agents: Agent[] = [];
let analyst: Agent;

const agent = async (name: string) => {
  const a = await newAgent(kubeconfig, `e2e-${name}-${run}`);
  agents.push(a);
  return a;
};

beforeAll(async () => {
  analyst = await agent('analyst');
});

// A failed test must not leave environments that use up the node for the next one.
afterEach(async (ctx) => {
  if (ctx.task.result?.state !== 'fail') return;
  for (const a of agents)
    await k(['delete', 'wenv', '--all', '-n', a.namespace, '--wait=true', '--timeout=120s']).catch(
      () => undefined,
    );
});

afterAll(async () => {
  for (const a of agents) await a.close().catch(() => undefined);
  for (const a of agents)
    await k(['delete', 'namespace', a.namespace, '--wait=false']).catch(() => undefined);
});

describe('agents through the Helm-installed stack and its Service (MCP SDK client, real microVMs)', () => {
  it('serves an MCP client at the URL and with the token pnpm waggle up printed', {
    timeout: 300_000,
  }, async () => {
    const client = await connectClient(inject('upUrl'), inject('upToken'), 'first-user');
    try {
      const call = (name: string, args: Record<string, unknown>) => ok(client, name, args);
      const env = await call('create_environment', { runtime: 'node' });
      const out = await call('execute', { environment_id: env.environment_id, code: 'console.log(6 * 7)' });
      expect(out).toMatchObject({ stdout: '42\n', exit_code: 0 });
      expect(await k(['get', 'wenv', '-A'])).toMatch(
        new RegExp(`waggle-demo\\s+${env.environment_id}\\s+node\\s+Running`),
      );
      await call('destroy_environment', { environment_id: env.environment_id });
    } finally {
      await client.close();
    }
  });

  it('runs the original Waggle session: pandas from the package index, analysis, results', {
    timeout: 900_000,
  }, async () => {
    const t0 = Date.now();
    const env = await analyst.ok<{ environment_id: string }>('create_environment', {
      runtime: 'python',
      name: 'sales',
    });
    process.stderr.write(`e2e: create_environment ${Date.now() - t0} ms\n`);
    const id = env.environment_id;
    const csv = [
      'region,product,units,price',
      'north,apple,12,2.5',
      'south,apple,7,3.0',
      'north,pear,5,4.0',
      'east,pear,9,4.0',
      'south,pear,3,4.5',
    ].join('\n');
    await analyst.ok('write_file', { environment_id: id, path: 'data/sales.csv', content: `${csv}\n` });
    const t1 = Date.now();
    const install = await analyst.ok<{ exit_code: number; stderr: string; stdout: string }>(
      'install_packages',
      {
        environment_id: id,
        packages: 'pandas', // the original Waggle's shape: one space-separated string
      },
    );
    process.stderr.write(`e2e: pip install pandas ${Date.now() - t1} ms\n`);
    expect(install.exit_code, install.stderr.slice(-2000)).toBe(0);
    const analysis = await analyst.ok<{ stdout: string; stderr: string; exit_code: number }>('execute', {
      environment_id: id,
      code: [
        'import pandas as pd',
        "df = pd.read_csv('data/sales.csv')",
        "df['revenue'] = df['units'] * df['price']",
        "by_region = df.groupby('region')['revenue'].sum().sort_index()",
        "by_region.to_json('data/revenue.json')",
        'print(by_region.to_string())',
        "print('total', df['revenue'].sum())",
      ].join('\n'),
      timeout_seconds: 120,
    });
    expect(analysis.exit_code, analysis.stderr).toBe(0);
    expect(analysis.stdout).toMatch(/east\s+36\.0\nnorth\s+50\.0\nsouth\s+34\.5/);
    expect(analysis.stdout).toMatch(/total 120\.5/);
    const result = await analyst.ok<{ content: string }>('read_file', {
      environment_id: id,
      path: 'data/revenue.json',
    });
    expect(JSON.parse(result.content)).toEqual({ east: 36, north: 50, south: 34.5 });
    const files = await analyst.ok<{ files: Array<{ name: string }> }>('list_files', {
      environment_id: id,
      path: 'data',
    });
    expect(files.files.map((f) => f.name).sort()).toEqual(['revenue.json', 'sales.csv']);
    // Show the result to a person: serve it in the background and share a preview URL (through the
    // gateway pod, the node-agent pod over mTLS, and SSH into the VM).
    const server = await analyst.ok<{ process_id: string }>('execute', {
      environment_id: id,
      language: 'shell',
      code: 'cd data && exec python3 -m http.server 8000',
      background: true,
    });
    const preview = await waitFor(
      () =>
        analyst.call('expose_port', { environment_id: id, port: 8000, public: true, expires_minutes: 10 }),
      (r) => !r.isError,
      'http.server to listen on port 8000',
      { timeoutMs: 60_000 },
    );
    const url = (preview.structuredContent as { url: string }).url;
    const served = await fetch(`${url}revenue.json`);
    expect(served.status).toBe(200);
    expect(await served.json()).toEqual({ east: 36, north: 50, south: 34.5 });
    const log = await analyst.ok<{ stderr: string; running: boolean }>('process_output', {
      environment_id: id,
      process_id: server.process_id,
    });
    expect(log).toMatchObject({
      running: true,
      stderr: expect.stringContaining('GET /revenue.json HTTP/1.1" 200'),
    });
    await analyst.ok('kill_process', { environment_id: id, process_id: server.process_id });
    await analyst.ok('unexpose_port', { environment_id: id, port: 8000 });
    expect(await k(['get', 'wenv', '-n', analyst.namespace, id, '--no-headers'])).toMatch(
      /python\s+Running\s+waggle-node/,
    );
    // Kept for the isolation test below; destroyed there.
  });

  it('lets nobody in another namespace list, use or destroy an environment', {
    timeout: 300_000,
  }, async () => {
    const mine = await analyst.ok<{ environments: Array<{ environment_id: string }> }>(
      'list_environments',
      {},
    );
    const id = mine.environments[0]?.environment_id as string;
    expect(id).toBeDefined();
    const intruder = await agent('intruder');
    expect((await intruder.ok<{ count: number }>('list_environments', {})).count).toBe(0);
    for (const [tool, args] of [
      ['execute', { environment_id: id, code: 'print(open("data/sales.csv").read())' }],
      ['read_file', { environment_id: id, path: 'data/sales.csv' }],
      ['write_file', { environment_id: id, path: 'x.txt', content: 'x' }],
      ['list_files', { environment_id: id }],
      ['install_packages', { environment_id: id, packages: ['six'] }],
      ['destroy_environment', { environment_id: id }],
    ] as const) {
      const r = await intruder.call(tool, args);
      expect(r.isError, tool).toBe(true);
      expect(text(r), tool).toMatch(/does not exist/);
    }
    expect(await k(['get', 'wenv', '-n', analyst.namespace, id, '--no-headers'])).toMatch(/Running/);
    await analyst.ok('destroy_environment', { environment_id: id });
  });

  it('serves five agents at once, each in its own environment, none seeing another', {
    timeout: 600_000,
  }, async () => {
    const five = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => agent(`five-${n}`)));
    const runtimes = ['python', 'node', 'shell', 'python', 'node'] as const;
    const envs = await Promise.all(
      five.map(async (a, i) => {
        const env = await a.ok<{ environment_id: string }>('create_environment', { runtime: runtimes[i] });
        await a.ok('write_file', {
          environment_id: env.environment_id,
          path: 'me.txt',
          content: a.namespace,
        });
        const code =
          runtimes[i] === 'python'
            ? "print(open('me.txt').read())"
            : runtimes[i] === 'node'
              ? "console.log(require('fs').readFileSync('me.txt', 'utf8'))"
              : 'cat me.txt; echo';
        const out = await a.ok<{ stdout: string }>('execute', { environment_id: env.environment_id, code });
        expect(out.stdout.trim()).toBe(a.namespace);
        return env.environment_id;
      }),
    );
    expect(new Set(envs).size).toBe(5);
    for (const [i, a] of five.entries()) {
      const listed = await a.ok<{ environments: Array<{ environment_id: string }> }>('list_environments', {});
      expect(listed.environments.map((e) => e.environment_id)).toEqual([envs[i]]);
      const other = envs[(i + 1) % 5] as string;
      const r = await a.call('read_file', { environment_id: other, path: 'me.txt' });
      expect(r.isError).toBe(true);
    }
    await Promise.all(five.map((a, i) => a.ok('destroy_environment', { environment_id: envs[i] })));
  });

  it('keeps working when the operator leader is deleted mid-run: no environment lost or duplicated', {
    timeout: 600_000,
  }, async () => {
    const a = await agent('failover');
    const first = await a.ok<{ environment_id: string }>('create_environment', { runtime: 'shell' });
    const leader = (
      await k([
        'get',
        'lease',
        '-n',
        RELEASE_NAMESPACE,
        `${RELEASE}-operator`,
        '-o',
        'jsonpath={.spec.holderIdentity}',
      ])
    ).trim();
    expect(leader).toMatch(new RegExp(`^${RELEASE}-operator-`));
    // Start a create, then kill the leader while it is being reconciled.
    const second = a.ok<{ environment_id: string }>('create_environment', { runtime: 'shell' });
    await new Promise((r) => setTimeout(r, 300));
    await k(['delete', 'pod', '-n', RELEASE_NAMESPACE, leader, '--wait=false']);
    const created = await second;
    const newLeader = await waitFor(
      async () =>
        (
          await k([
            'get',
            'lease',
            '-n',
            RELEASE_NAMESPACE,
            `${RELEASE}-operator`,
            '-o',
            'jsonpath={.spec.holderIdentity}',
          ])
        ).trim(),
      (h) => h !== '' && h !== leader,
      'another replica to hold the lease',
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(newLeader).not.toBe(leader);
    const third = await a.ok<{ environment_id: string }>('create_environment', { runtime: 'shell' });
    const ids = [first.environment_id, created.environment_id, third.environment_id];
    for (const id of ids) {
      const out = await a.ok<{ stdout: string }>('execute', { environment_id: id, code: 'echo ok' });
      expect(out.stdout).toBe('ok\n');
    }
    const wenv = JSON.parse(await k(['get', 'wenv', '-n', a.namespace, '-o', 'json'])) as {
      items: Array<{ metadata: { name: string; uid: string }; status: { vmId: string; phase: string } }>;
    };
    expect(wenv.items.map((e) => e.metadata.name).sort()).toEqual([...ids].sort());
    expect(wenv.items.every((e) => e.status.phase === 'Running' && e.status.vmId === e.metadata.uid)).toBe(
      true,
    );
    const qemu = await qemuPidsByVmId();
    for (const e of wenv.items) expect(qemu.get(e.metadata.uid)).toHaveLength(1);
    for (const id of ids) await a.ok('destroy_environment', { environment_id: id });
  });

  it('keeps the sandbox boundary: a guest reaches no etcd, apiserver, kubelet, MCP port, pod or Service; a fork bomb leaves the node-agent running', {
    timeout: 600_000,
  }, async () => {
    const a = await agent('boundary');
    const probe = await a.ok<{ environment_id: string }>('create_environment', { runtime: 'python' });
    const bombed = await a.ok<{ environment_id: string }>('create_environment', { runtime: 'shell' });
    const jsonpath = (args: string[]) => k([...args, '-o', 'jsonpath={.items[0].status.podIP}']);
    const gatewayPod = (
      await jsonpath(['get', 'pods', '-n', RELEASE_NAMESPACE, '-l', 'app.kubernetes.io/component=gateway'])
    ).trim();
    const mcpService = (
      await k(['get', 'svc', '-n', RELEASE_NAMESPACE, `${RELEASE}-mcp`, '-o', 'jsonpath={.spec.clusterIP}'])
    ).trim();
    // Every one of these answered a guest before the boundary (issue #15): etcd's JSON gateway
    // listed the cluster's Secrets from 10.0.2.2:12379.
    const targets: Array<[string, number]> = [
      ['10.0.2.2', CLUSTER.etcdClientPort],
      ['10.0.2.2', CLUSTER.apiserverPort],
      ['10.0.2.2', 8080], // pnpm waggle up's MCP forward
      [CLUSTER.nodeIP, 10250], // kubelet
      [CLUSTER.nodeIP, 10249], // kube-proxy metrics
      [CLUSTER.nodeIP, 7443], // the node-agent itself
      [CLUSTER.apiserverServiceIP, 443],
      [mcpService, 8080],
      [gatewayPod, 8080],
    ];
    const code = [
      'import socket, time',
      `for host, port in ${JSON.stringify(targets)}:`,
      '    t0 = time.time()',
      '    try:',
      '        socket.create_connection((host, port), timeout=5).close()',
      '        print(host, port, "reached")',
      '    except OSError:',
      '        print(host, port, "refused", round(time.time() - t0, 1))',
    ].join('\n');
    const out = await a.ok<{ stdout: string }>('execute', { environment_id: probe.environment_id, code });
    const lines = out.stdout.trim().split('\n');
    expect(lines).toHaveLength(targets.length);
    for (const line of lines) expect(line).toMatch(/ refused (0|1)\.\d$/);

    const restarts = async () =>
      (
        await k([
          'get',
          'pods',
          '-n',
          RELEASE_NAMESPACE,
          '-l',
          'app.kubernetes.io/component=node-agent',
          '-o',
          'jsonpath={.items[0].status.containerStatuses[0].restartCount}',
        ])
      ).trim();
    const before = await restarts();
    const bomb = await a.call('execute', {
      environment_id: bombed.environment_id,
      code: ':(){ :|:& };:',
      timeout_seconds: 10,
    });
    // A result for the caller (timed out, or an isError naming the environment), never a protocol error.
    expect(bomb.content.length).toBeGreaterThan(0);
    const neighbour = await a.ok<{ stdout: string }>('execute', {
      environment_id: probe.environment_id,
      code: 'print("neighbour fine")',
    });
    expect(neighbour.stdout).toBe('neighbour fine\n');
    expect(await restarts()).toBe(before);
    for (const id of [probe.environment_id, bombed.environment_id])
      await a.ok('destroy_environment', { environment_id: id });
  });

  it('keeps environments usable when the node-agent pod is deleted', { timeout: 300_000 }, async () => {
    const a = await agent('agentpod');
    const env = await a.ok<{ environment_id: string }>('create_environment', { runtime: 'python' });
    await a.ok('write_file', { environment_id: env.environment_id, path: 'keep.txt', content: 'kept' });
    await k([
      'delete',
      'pod',
      '-n',
      RELEASE_NAMESPACE,
      '-l',
      'app.kubernetes.io/component=node-agent',
      '--wait=true',
    ]);
    await waitFor(
      () =>
        k([
          'get',
          'pods',
          '-n',
          RELEASE_NAMESPACE,
          '-l',
          'app.kubernetes.io/component=node-agent',
          '--no-headers',
        ]),
      (out) => /\s1\/1\s+Running\s/.test(out) && out.trim().split('\n').length === 1,
      'the node-agent to be back',
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );
    const out = await a.ok<{ content: string }>('read_file', {
      environment_id: env.environment_id,
      path: 'keep.txt',
    });
    expect(out.content).toBe('kept');
    await a.ok('destroy_environment', { environment_id: env.environment_id });
  });

  it('deletes an environment after its idle timeout and keeps an active one', {
    timeout: 300_000,
  }, async () => {
    const a = await agent('idle');
    // From before the idle environment exists: its minute cannot have started earlier.
    const started = Date.now();
    const idle = await a.ok<{ environment_id: string }>('create_environment', {
      runtime: 'shell',
      timeout_minutes: 1,
    });
    const active = await a.ok<{ environment_id: string }>('create_environment', {
      runtime: 'shell',
      timeout_minutes: 1,
    });
    while (Date.now() - started < 100_000) {
      await a.ok('execute', { environment_id: active.environment_id, code: 'true' });
      const listed = await a.ok<{ environments: Array<{ environment_id: string }> }>('list_environments', {});
      if (!listed.environments.some((e) => e.environment_id === idle.environment_id)) break;
      await new Promise((r) => setTimeout(r, 10_000));
    }
    const gone = Date.now() - started;
    const listed = await a.ok<{ environments: Array<{ environment_id: string }> }>('list_environments', {});
    expect(listed.environments.map((e) => e.environment_id)).toEqual([active.environment_id]);
    expect(gone).toBeGreaterThan(50_000); // not before its minute was up (allowing for clock granularity)
    // Events are sent off the reconcile's path: the deletion can be seen a moment before its event.
    const events = await waitFor(
      () => k(['get', 'events', '-n', a.namespace, '--field-selector', 'reason=Expired', '-o', 'name']),
      (out) => out.trim() !== '',
      'an Expired event',
      { timeoutMs: 10_000, intervalMs: 500 },
    );
    expect(events.trim()).not.toBe('');
    await a.ok('destroy_environment', { environment_id: active.environment_id });
  });
});
