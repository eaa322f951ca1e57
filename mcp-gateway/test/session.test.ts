import type { CustomObjectsApi } from '@kubernetes/client-node';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { createNodeAgentClient } from '@waggle/node-agent/client';
import { type AgentProcess, call, ok, waitFor } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type RealStack, startRealStack } from './real-stack.ts';

let stack: RealStack;
let client: Client;
let agent: AgentProcess;
let custom: CustomObjectsApi;
let namespace: string;
let nodeName: string;

beforeAll(async () => {
  stack = await startRealStack({
    kubeconfigPath: inject('kubeconfigPath'),
    name: 'session',
    vmNetworkCidr: '10.253.28.0/24',
    tenants: ['analyst'],
  });
  ({ agent, custom, nodeName } = stack);
  client = stack.tenants.analyst?.client as Client;
  namespace = stack.tenants.analyst?.namespace as string;
}, 900_000);

afterAll(async () => {
  await stack?.close();
});

describe('the original Waggle session through MCP (real operator, node-agent and TCG microVM)', () => {
  it('creates a python environment, writes a CSV, installs a package, analyses, reads, lists, destroys', {
    timeout: 600_000,
  }, async () => {
    // The original Waggle's documented calls, in its parameter shapes (packages is one
    // space-separated string there), and the fields its results carry.
    const t0 = Date.now();
    const env = await ok<Record<string, unknown>>(client, 'create_environment', {
      runtime: 'python',
      name: 'sales-analysis',
    });
    process.stderr.write(`session.test: create_environment ${Date.now() - t0} ms (tcg)\n`);
    expect(env).toMatchObject({
      environment_id: expect.stringMatching(/^env-[a-z0-9]{10}$/),
      name: 'sales-analysis',
      runtime: 'python',
      status: 'running',
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      timeout: 30,
      node: nodeName,
    });
    const id = env.environment_id as string;

    const csv = 'region,units,price\nnorth,12,2.5\nsouth,7,3.0\nnorth,5,2.5\neast,9,4.0\n';
    const written = await ok(client, 'write_file', { environment_id: id, path: 'sales.csv', content: csv });
    expect(written).toEqual({ status: 'written', path: 'sales.csv', bytes_written: csv.length });
    const install = await ok<{ exit_code: number; stdout: string; stderr: string }>(
      client,
      'install_packages',
      { environment_id: id, packages: 'six==1.16.0 tomli==2.0.1' },
    );
    expect(install, install.stderr).toMatchObject({
      exit_code: 0,
      stdout: expect.stringMatching(/six-1\.16\.0.*tomli-2\.0\.1|tomli-2\.0\.1.*six-1\.16\.0/s),
      stderr: expect.any(String),
    });
    const analysis = [
      'import csv, json, six',
      'totals = {}',
      "with open('sales.csv') as f:",
      '    for row in csv.DictReader(f):',
      "        totals[row['region']] = totals.get(row['region'], 0) + int(row['units']) * float(row['price'])",
      "json.dump({'totals': totals, 'six': six.__version__}, open('result.json', 'w'), sort_keys=True)",
      "print('regions:', len(totals))",
    ].join('\n');
    const exec = await ok<{ stdout: string; stderr: string; exit_code: number }>(client, 'execute', {
      environment_id: id,
      code: analysis,
      language: 'python',
    });
    expect(exec, exec.stderr).toMatchObject({
      stdout: 'regions: 3\n',
      stderr: '',
      exit_code: 0,
      duration_ms: expect.any(Number),
    });
    const result = await ok<{ content: string }>(client, 'read_file', {
      environment_id: id,
      path: 'result.json',
    });
    // As in the original, the text block is the file's text itself.
    const rawRead = await call(client, 'read_file', { environment_id: id, path: 'result.json' });
    expect(rawRead.content).toEqual([{ type: 'text', text: result.content }]);
    expect(JSON.parse(result.content)).toEqual({
      six: '1.16.0',
      totals: { east: 36, north: 42.5, south: 21 },
    });
    const files = await ok<{ path: string; count: number; files: Array<Record<string, unknown>> }>(
      client,
      'list_files',
      { environment_id: id, path: '/home/sandbox' },
    );
    expect(files).toMatchObject({ path: '/home/sandbox', count: files.files.length });
    expect(files.files.find((f) => f.name === 'sales.csv')).toMatchObject({
      name: 'sales.csv',
      size: csv.length,
      is_dir: false,
      mode: expect.stringMatching(/^0?[0-7]{3,4}$/),
      modified: expect.stringMatching(/^\d{4}-/),
    });
    expect(files.files.map((f) => f.name)).toEqual(expect.arrayContaining(['sales.csv', 'result.json']));
    const listed = await ok<{ count: number; environments: Array<Record<string, unknown>> }>(
      client,
      'list_environments',
      {},
    );
    expect(listed.count).toBe(1);
    expect(listed.environments[0]).toMatchObject({
      environment_id: id,
      name: 'sales-analysis',
      runtime: 'python',
      status: 'running',
      created_at: env.created_at,
    });
    const failing = await ok<{ exit_code: number; stderr: string }>(client, 'execute', {
      environment_id: id,
      code: 'import sys\nsys.exit(3)',
    });
    expect(failing.exit_code).toBe(3);
    // A timeout kills the guest process and keeps the output produced so far.
    const slow = await ok<{ stdout: string; timed_out: boolean; exit_code: number | null }>(
      client,
      'execute',
      {
        environment_id: id,
        code: "import time\nprint('started', flush=True)\ntime.sleep(60)",
        timeout_seconds: 3,
      },
    );
    expect(slow).toMatchObject({ stdout: 'started\n', timed_out: true, exit_code: null });

    const destroyed = await ok(client, 'destroy_environment', { environment_id: id });
    expect(destroyed).toMatchObject({ status: 'destroyed', message: expect.stringContaining(id) });
    await waitFor(
      async () => (await ok<{ count: number }>(client, 'list_environments', {})).count,
      (n) => n === 0,
      'the environment to disappear',
      { timeoutMs: 60_000 },
    );
    // The finalizer destroys the VM after the object is marked for deletion.
    const nodeAgent = createNodeAgentClient(agent.apiUrl);
    await waitFor(
      async () => (await nodeAgent.listVMs({})).vms.length,
      (n) => n === 0,
      'the VM to be destroyed on the node',
      { timeoutMs: 60_000 },
    );
    await waitFor(
      () =>
        custom
          .getNamespacedCustomObject({
            group: 'waggle.dev',
            version: 'v1alpha1',
            plural: 'waggleenvironments',
            namespace,
            name: id,
          })
          .then(
            () => true,
            () => false,
          ),
      (exists) => !exists,
      'the WaggleEnvironment to be gone',
      { timeoutMs: 30_000 },
    );
  });
});
