import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CALLER_LABEL, LAST_ACTIVITY_ANNOTATION, type WaggleEnvironment } from '@waggle/crds';
import { type FakeNodeAgent, startFakeNodeAgent } from '@waggle/node-agent/testing';
import { call, connectClient, errorText, ok, registerFakeNode, waitFor } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunningGateway } from '../src/gateway.ts';
import { type FakeStack, startFakeStack } from './fake-stack.ts';

const kubeconfigPath = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
const G = { group: 'waggle.dev', version: 'v1alpha1', plural: 'waggleenvironments' };
const suffix = randomBytes(3).toString('hex');
const nsA = `gw-a-${suffix}`;
const nsB = `gw-b-${suffix}`;
let KEY_A: string;
let KEY_B: string;
let KEY_C: string; // nsA too, but another caller

let agent: FakeNodeAgent;
let gateway: RunningGateway;
let a: Client;
let b: Client;

let stack: FakeStack;

beforeAll(async () => {
  stack = await startFakeStack({
    kc,
    kubeconfigPath,
    name: 'gw',
    namespaces: [nsA, nsB],
    callers: [
      { name: 'agent-a', namespace: nsA },
      { name: 'agent-b', namespace: nsB },
      { name: 'agent-c', namespace: nsA },
    ],
    node: { vms: 30, runtimes: ['python', 'node'] },
    agent: { createDelayMs: 100 },
    gatewayEnv: {
      WAGGLE_MAX_ENVIRONMENTS: '3',
      WAGGLE_UNSCHEDULABLE_GRACE: '1s',
      WAGGLE_ACTIVITY_INTERVAL: '1s',
    },
  });
  agent = stack.agent;
  gateway = stack.gateway as RunningGateway;
  const key = (name: string) => stack.keys[name] as string;
  [KEY_A, KEY_B, KEY_C] = [key('agent-a'), key('agent-b'), key('agent-c')];
  a = await connectClient(gateway.url, KEY_A, 'agent-a');
  b = await connectClient(gateway.url, KEY_B, 'agent-b');
}, 120_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  await stack?.close();
});

const envObject = (ns: string, name: string) =>
  custom.getNamespacedCustomObject({ ...G, namespace: ns, name }) as Promise<WaggleEnvironment>;

/** Waits until the environment object is gone (its finalizer has run). */
const untilGone = (ns: string, name: string) =>
  waitFor(
    () =>
      envObject(ns, name).then(
        () => true,
        () => false,
      ),
    (exists) => !exists,
    `environment ${name} to be gone`,
    { timeoutMs: 30_000 },
  );

describe('mcp-gateway over Streamable HTTP (real apiserver and operator, fake node-agent)', () => {
  it('lists the tools with input and output schemas and annotations', async () => {
    const { tools } = await a.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([
      'create_environment',
      'destroy_environment',
      'execute',
      'expose_port',
      'extend_environment',
      'install_packages',
      'kill_process',
      'list_environments',
      'list_files',
      'process_output',
      'read_file',
      'unexpose_port',
      'write_file',
    ]);
    for (const t of tools) {
      expect(t.outputSchema, t.name).toBeDefined();
      expect(t.annotations, t.name).toBeDefined();
    }
    expect(tools.find((t) => t.name === 'destroy_environment')?.annotations?.destructiveHint).toBe(true);
    expect(tools.find((t) => t.name === 'read_file')?.annotations?.readOnlyHint).toBe(true);
    expect(tools.find((t) => t.name === 'execute')?.inputSchema.required).toEqual(['environment_id', 'code']);
  });

  it('runs a session: create, write, read, list, execute, install, destroy', {
    timeout: 60_000,
  }, async () => {
    const progress: string[] = [];
    const created = (await a.callTool(
      { name: 'create_environment', arguments: { runtime: 'python', name: 'analysis', timeout_minutes: 15 } },
      undefined,
      { onprogress: (p) => progress.push(p.message ?? '') },
    )) as { structuredContent: Record<string, unknown>; content: Array<{ type: string; text: string }> };
    const env = created.structuredContent as {
      environment_id: string;
      status: string;
      timeout: number;
      name: string;
    };
    expect(env).toMatchObject({ status: 'running', timeout: 15, name: 'analysis', runtime: 'python' });
    expect(JSON.parse(created.content[0]?.text ?? '{}')).toEqual(created.structuredContent);
    expect(progress.length).toBeGreaterThan(0);
    const id = env.environment_id;

    const obj = await envObject(nsA, id);
    expect(obj.spec).toMatchObject({
      runtime: 'python',
      displayName: 'analysis',
      idleTimeout: '15m',
      network: { egress: 'all' }, // WAGGLE_DEFAULT_NETWORK: internet
    });
    expect(obj.metadata.labels?.[CALLER_LABEL]).toMatch(/^[0-9a-f]{16}$/);

    const csv = 'city,temp\nOslo,4\nLima,19\n';
    expect(await ok(a, 'write_file', { environment_id: id, path: 'data.csv', content: csv })).toEqual({
      status: 'written',
      path: 'data.csv',
      bytes_written: csv.length,
    });
    expect(await ok(a, 'read_file', { environment_id: id, path: 'data.csv' })).toMatchObject({
      content: csv,
      encoding: 'utf8',
      size: csv.length,
    });
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255]);
    await ok(a, 'write_file', {
      environment_id: id,
      path: 'x.png',
      content: png.toString('base64'),
      encoding: 'base64',
    });
    const back = await ok<{ content: string; encoding: string }>(a, 'read_file', {
      environment_id: id,
      path: 'x.png',
    });
    expect(back.encoding).toBe('base64');
    expect(Buffer.from(back.content, 'base64')).toEqual(png);
    const listing = await ok<{ files: Array<{ name: string; is_dir: boolean }>; count: number }>(
      a,
      'list_files',
      {
        environment_id: id,
      },
    );
    expect(listing.files.map((f) => f.name).sort()).toEqual(['data.csv', 'x.png']);
    expect(listing.count).toBe(2);

    const exec = await ok(a, 'execute', { environment_id: id, code: 'print("hi")', language: 'python3' });
    expect(exec).toMatchObject({ stdout: 'print("hi")', exit_code: 0, timed_out: false });
    expect(agent.execCalls.at(-1)).toEqual({
      vmId: obj.metadata.uid,
      language: 'python',
      code: 'print("hi")',
    });
    expect(await ok(a, 'install_packages', { environment_id: id, packages: ['six'] })).toMatchObject({
      manager: 'pip',
      exit_code: 0,
    });
    // The original Waggle's shape: one space-separated string, split into package names.
    expect(
      await ok(a, 'install_packages', { environment_id: id, packages: 'six  tomli==2.0.1' }),
    ).toMatchObject({
      manager: 'pip',
      stdout: 'installed six tomli==2.0.1',
    });
    // Activity is recorded on the object (throttled), for idle expiry.
    await waitFor(
      () => envObject(nsA, id),
      (e) => Boolean(e.metadata.annotations?.[LAST_ACTIVITY_ANNOTATION]),
      'activity annotation',
      { timeoutMs: 10_000 },
    );

    const listed = await ok<{ environments: Array<{ environment_id: string }>; count: number }>(
      a,
      'list_environments',
      {},
    );
    expect(listed.environments.map((e) => e.environment_id)).toContain(id);
    expect(await ok(a, 'destroy_environment', { environment_id: id })).toMatchObject({ status: 'destroyed' });
    await untilGone(nsA, id);
    expect(agent.vms.has(obj.metadata.uid as string)).toBe(false);
  });

  it("passes the caller's network choice into the spec: none, or the internet limited to domains", {
    timeout: 60_000,
  }, async () => {
    const offline = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'python',
      network: 'none',
    });
    expect((await envObject(nsA, offline.environment_id)).spec.network).toEqual({ egress: 'none' });
    const limited = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'python',
      allow_domains: ['PyPI.org', '*.pythonhosted.org'],
    });
    expect((await envObject(nsA, limited.environment_id)).spec.network).toEqual({
      egress: 'all',
      allowDomains: ['pypi.org', '*.pythonhosted.org'],
    });
    await ok(a, 'destroy_environment', { environment_id: offline.environment_id });
    await ok(a, 'destroy_environment', { environment_id: limited.environment_id });
  });

  it('isolates tenants: another namespace cannot see or touch an environment', {
    timeout: 60_000,
  }, async () => {
    const { environment_id: id } = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'node',
    });
    await ok(a, 'write_file', { environment_id: id, path: 'secret.txt', content: 'A only' });
    const listedByB = await ok<{ count: number; environments: Array<{ environment_id: string }> }>(
      b,
      'list_environments',
      {},
    );
    expect(listedByB.environments.map((e) => e.environment_id)).not.toContain(id);
    const attempts: Array<[string, Record<string, unknown>]> = [
      ['execute', { environment_id: id, code: 'ls' }],
      ['read_file', { environment_id: id, path: 'secret.txt' }],
      ['write_file', { environment_id: id, path: 'x', content: 'y' }],
      ['list_files', { environment_id: id }],
      ['install_packages', { environment_id: id, packages: ['lodash'] }],
      ['destroy_environment', { environment_id: id }],
    ];
    for (const [tool, args] of attempts) {
      const r = await call(b, tool, args);
      expect(r.isError, tool).toBe(true);
      expect(errorText(r), tool).toMatch(new RegExp(`environment "${id}" does not exist`));
    }
    expect((await envObject(nsA, id)).metadata.deletionTimestamp).toBeUndefined();
    // A session belongs to its caller: B's token with A's session id is "not found".
    const sessionId = (a.transport as { sessionId?: string }).sessionId as string;
    const hijack = await fetch(gateway.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${KEY_B}`,
        'mcp-session-id': sessionId,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(hijack.status).toBe(404);
    await ok(a, 'destroy_environment', { environment_id: id });
  });

  it('answers every invalid input with an isError result that names the problem', async () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['create_environment', {}, /runtime: runtime must be one of python, node, shell/],
      ['create_environment', { runtime: 'ruby' }, /runtime must be one of python, node, shell/],
      ['create_environment', { runtime: 'python', timeout_minutes: 0 }, /timeout_minutes must be at least 1/],
      ['create_environment', { runtime: 'python', timeout_minutes: 1.5 }, /whole number of minutes/],
      ['create_environment', { runtime: 'python', name: 'x'.repeat(300) }, /name must be at most 253/],
      ['create_environment', { runtime: 'python', network: 'all' }, /network must be "none" or "internet"/],
      [
        'create_environment',
        { runtime: 'python', allow_domains: ['pypi.org', 'https://x/'] },
        /allow_domains entry must be a domain name such as "pypi.org"/,
      ],
      [
        'create_environment',
        { runtime: 'python', allow_domains: [] },
        /allow_domains must list at least one/,
      ],
      [
        'create_environment',
        { runtime: 'python', network: 'none', allow_domains: ['pypi.org'] },
        /allow_domains needs network "internet"/,
      ],
      ['destroy_environment', {}, /environment_id is required/],
      ['destroy_environment', { environment_id: 'Bad ID!' }, /environment_id has characters no id has/],
      ['destroy_environment', { environment_id: 'env-missing' }, /environment "env-missing" does not exist/],
      ['execute', { environment_id: 'env-missing' }, /code is required/],
      ['execute', { environment_id: 'env-missing', code: '' }, /code is empty/],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', language: 'cobol' },
        /language "cobol" is not supported/,
      ],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', language: 'constructor' },
        /language "constructor" is not supported/,
      ],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', timeout_seconds: -1 },
        /timeout_seconds must be more than 0/,
      ],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', timeout_seconds: 9999 },
        /timeout_seconds must be at most 300/,
      ],
      ['execute', { environment_id: 'env-missing', code: 'x' }, /does not exist.*list_environments/],
      [
        'execute',
        { environment_id: 'env-missing', code: 'x', background: true, timeout_seconds: 5 },
        /timeout_seconds: does not apply with background: true/,
      ],
      ['execute', { environment_id: 'env-missing', code: 'x', background: 'yes' }, /background must be true/],
      ['process_output', { environment_id: 'env-missing' }, /process_id is required/],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: '1234' },
        /process_id must be one that execute with background: true returned/,
      ],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: 'proc-0123456789abcdef', since: -1 },
        /since must be 0 or more/,
      ],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: 'proc-0123456789abcdef', since: 1.5 },
        /since must be a whole number/,
      ],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: 'proc-0123456789abcdef', wait_seconds: 31 },
        /wait_seconds must be at most 30/,
      ],
      [
        'process_output',
        { environment_id: 'env-missing', process_id: 'proc-0123456789abcdef' },
        /environment "env-missing" does not exist/,
      ],
      ['kill_process', { environment_id: 'env-missing', process_id: 'x' }, /process_id must be one that/],
      ['install_packages', { environment_id: 'env-missing', packages: [] }, /packages is empty/],
      [
        'install_packages',
        { environment_id: 'env-missing', packages: 42 },
        /packages must be package names: a list/,
      ],
      ['install_packages', { environment_id: 'env-missing', packages: '  ' }, /packages is empty/],
      ['install_packages', { environment_id: 'env-missing', packages: [''] }, /a package name is empty/],
      ['write_file', { environment_id: 'env-missing', path: 'a' }, /content is required/],
      ['write_file', { environment_id: 'env-missing', path: '', content: '' }, /path is empty/],
      [
        'write_file',
        { environment_id: 'env-missing', path: 'a', content: '', encoding: 'hex' },
        /encoding must be/,
      ],
      ['read_file', { environment_id: 'env-missing' }, /path is required/],
      ['read_file', { environment_id: 'env-missing', path: 'a\u0000b' }, /NUL byte/],
      [
        'read_file',
        { environment_id: 'env-missing', path: 'a', encoding: 'latin1' },
        /encoding must be "auto"/,
      ],
      ['list_files', { environment_id: 42 }, /environment_id/],
      ['install_packages', { packages: ['six'] }, /environment_id is required/],
      ['list_files', { environment_id: 'env-missing', path: 'x'.repeat(5000) }, /longer than 4096/],
    ];
    for (const [tool, args, expected] of cases) {
      const r = await call(a, tool, args);
      expect(r.isError, `${tool} ${JSON.stringify(args).slice(0, 80)}`).toBe(true);
      expect(errorText(r), `${tool} ${JSON.stringify(args).slice(0, 80)}`).toMatch(expected);
    }
  });

  it('reports file errors from the node and invalid base64 clearly', { timeout: 60_000 }, async () => {
    const { environment_id: id } = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'python',
    });
    const missing = await call(a, 'read_file', { environment_id: id, path: 'nope.txt' });
    expect(missing.isError).toBe(true);
    expect(errorText(missing)).toMatch(/nope\.txt does not exist.*list_files/);
    const bad64 = await call(a, 'write_file', {
      environment_id: id,
      path: 'b',
      content: '@@@',
      encoding: 'base64',
    });
    expect(errorText(bad64)).toMatch(/not valid base64/);
    await ok(a, 'destroy_environment', { environment_id: id });
  });

  it('answers calls to an environment whose node stopped answering with isError, not a protocol error', {
    timeout: 60_000,
  }, async () => {
    // A second node, the only one with the shell runtime, whose agent then goes away while its
    // WaggleNode keeps heartbeating (a hung or partitioned agent).
    const shellAgent = await startFakeNodeAgent({ createDelayMs: 50 });
    const shellNode = `gw-shell-${suffix}`;
    let registration = await registerFakeNode(custom, {
      name: shellNode,
      endpoint: shellAgent.url,
      vms: 2,
      runtimes: ['shell'],
    });
    let replacement: FakeNodeAgent | undefined;
    try {
      const { environment_id: id } = await ok<{ environment_id: string }>(a, 'create_environment', {
        runtime: 'shell',
      });
      await shellAgent.stop();
      const calls: Array<[string, Record<string, unknown>]> = [
        ['execute', { environment_id: id, code: 'true' }],
        ['write_file', { environment_id: id, path: 'a.txt', content: 'x' }],
        ['read_file', { environment_id: id, path: 'a.txt' }],
        ['list_files', { environment_id: id }],
      ];
      for (const [tool, args] of calls) {
        const r = await call(a, tool, args);
        expect(r.isError, tool).toBe(true);
        expect(errorText(r), tool).toMatch(new RegExp(`environment "${id}" is unreachable.*did not answer`));
      }
      // Bring the node back (a new agent) so the finalizer can finish quickly.
      replacement = await startFakeNodeAgent();
      await registration.remove();
      registration = await registerFakeNode(custom, {
        name: shellNode,
        endpoint: replacement.url,
        vms: 2,
        runtimes: ['shell'],
      });
      await ok(a, 'destroy_environment', { environment_id: id });
      await untilGone(nsA, id);
    } finally {
      await registration.remove();
      await replacement?.stop();
    }
  });

  it('enforces the per-caller limit and counts callers separately', { timeout: 60_000 }, async () => {
    // Four creates at once: the watch cache lags the creates, and still only three may pass.
    const results = await Promise.all(
      [0, 1, 2, 3].map(() => call(a, 'create_environment', { runtime: 'python' })),
    );
    const ids = results
      .filter((r) => !r.isError)
      .map((r) => (r.structuredContent as { environment_id: string }).environment_id);
    expect(ids).toHaveLength(3);
    const fourth = results.find((r) => r.isError);
    expect(fourth?.isError).toBe(true);
    expect(errorText(fourth as Awaited<ReturnType<typeof call>>)).toMatch(/already have 3 environments/);
    const extra = await call(a, 'create_environment', { runtime: 'python' });
    expect(extra.isError).toBe(true);
    expect(errorText(extra)).toMatch(/already have 3 environments/);
    // Another caller in the same namespace has its own allowance, and sees the namespace's environments.
    const c = await connectClient(gateway.url, KEY_C, 'agent-c');
    try {
      const mine = await ok<{ environment_id: string }>(c, 'create_environment', { runtime: 'python' });
      ids.push(mine.environment_id);
    } finally {
      await c.close();
    }
    for (const id of ids) await ok(a, 'destroy_environment', { environment_id: id });
  });

  it('turns an admission policy refusing extend_environment into an isError result with its reason', {
    timeout: 60_000,
  }, async () => {
    // A cluster whose policy caps idle timeouts below the gateway's own maximum.
    const admission = kc.makeApiClient(AdmissionregistrationV1Api);
    const name = `cap-idle-${suffix}`;
    await admission.createValidatingAdmissionPolicy({
      body: {
        metadata: { name },
        spec: {
          failurePolicy: 'Fail',
          matchConstraints: {
            resourceRules: [
              {
                apiGroups: ['waggle.dev'],
                apiVersions: ['*'],
                operations: ['UPDATE'],
                resources: ['waggleenvironments'],
              },
            ],
          },
          validations: [
            {
              expression: "duration(object.spec.idleTimeout) <= duration('1h')",
              message:
                'spec.idleTimeout exceeds this cluster’s limit of 1h (chart value limits.maxIdleTimeout)',
            },
          ],
        },
      },
    });
    await admission.createValidatingAdmissionPolicyBinding({
      body: {
        metadata: { name },
        spec: {
          policyName: name,
          validationActions: ['Deny'],
          matchResources: {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': nsA } },
          },
        },
      },
    });
    try {
      const { environment_id } = await ok<{ environment_id: string }>(a, 'create_environment', {
        runtime: 'python',
      });
      // Policies take effect once the apiserver has loaded them: retry until refused.
      const r = await waitFor(
        () => call(a, 'extend_environment', { environment_id, timeout_minutes: 120 }),
        (res) => res.isError === true,
        'extend_environment refused by the policy',
        { timeoutMs: 20_000, intervalMs: 500 },
      );
      expect(errorText(r)).toMatch(
        /the cluster refused the new timeout: .*limit of 1h \(chart value limits\.maxIdleTimeout\)/,
      );
      await ok(a, 'destroy_environment', { environment_id });
    } finally {
      await admission.deleteValidatingAdmissionPolicyBinding({ name });
      await admission.deleteValidatingAdmissionPolicy({ name });
    }
  });

  it('turns a ResourceQuota refusal into an isError result with the apiserver’s reason', {
    timeout: 30_000,
  }, async () => {
    const resource = 'count/waggleenvironments.waggle.dev';
    await core.createNamespacedResourceQuota({
      namespace: nsB,
      body: { metadata: { name: 'no-envs' }, spec: { hard: { [resource]: '0' } } },
    });
    try {
      // No quota controller runs beside this apiserver: write the usage it would have computed.
      const q = await core.readNamespacedResourceQuota({ name: 'no-envs', namespace: nsB });
      await core.replaceNamespacedResourceQuotaStatus({
        name: 'no-envs',
        namespace: nsB,
        body: { ...q, status: { hard: { [resource]: '0' }, used: { [resource]: '0' } } },
      });
      const r = await call(b, 'create_environment', { runtime: 'python' });
      expect(r.isError).toBe(true);
      expect(errorText(r)).toMatch(/the cluster refused the new environment: .*exceeded quota: no-envs/);
    } finally {
      await core.deleteNamespacedResourceQuota({ name: 'no-envs', namespace: nsB });
    }
  });

  it('waits for a namespace’s brand-new ResourceQuota to be counted instead of failing the create', {
    timeout: 60_000,
  }, async () => {
    const resource = 'count/waggleenvironments.waggle.dev';
    await core.createNamespacedResourceQuota({
      namespace: nsB,
      body: { metadata: { name: 'fresh' }, spec: { hard: { [resource]: '5' } } },
    });
    try {
      // Until its status is filled, quota admission refuses every create ("status unknown").
      const creating = call(b, 'create_environment', { runtime: 'python' });
      await new Promise((r) => setTimeout(r, 1_500));
      const q = await core.readNamespacedResourceQuota({ name: 'fresh', namespace: nsB });
      await core.replaceNamespacedResourceQuotaStatus({
        name: 'fresh',
        namespace: nsB,
        body: { ...q, status: { hard: { [resource]: '5' }, used: { [resource]: '0' } } },
      });
      const r = await creating;
      expect(r.isError, errorText(r)).toBeFalsy();
      await ok(b, 'destroy_environment', {
        environment_id: (r.structuredContent as { environment_id: string }).environment_id,
      });
    } finally {
      await core.deleteNamespacedResourceQuota({ name: 'fresh', namespace: nsB });
    }
  });

  it('fails create_environment with the scheduler reason when no node fits, leaving nothing', {
    timeout: 60_000,
  }, async () => {
    const r = await call(a, 'create_environment', { runtime: 'shell' });
    expect(r.isError).toBe(true);
    expect(errorText(r)).toMatch(
      /no node can run the environment right now: 0\/\d+ nodes are available: .*no shell runtime/,
    );
    await waitFor(
      async () =>
        (
          (await custom.listNamespacedCustomObject({ ...G, namespace: nsA })) as {
            items: WaggleEnvironment[];
          }
        ).items,
      (items) => !items.some((e) => e.spec.runtime === 'shell'),
      'the unschedulable environment to be removed',
      { timeoutMs: 15_000 },
    );
  });

  it('sends progress for long executions and stops the guest process on cancellation', {
    timeout: 60_000,
  }, async () => {
    const { environment_id: id } = await ok<{ environment_id: string }>(a, 'create_environment', {
      runtime: 'python',
    });
    const progress: number[] = [];
    const r = await a.callTool(
      { name: 'execute', arguments: { environment_id: id, code: 'sleep:2500' } },
      undefined,
      {
        onprogress: (p) => progress.push(p.progress),
      },
    );
    expect(r.isError).toBeFalsy();
    expect(progress.length).toBeGreaterThanOrEqual(2);
    const controller = new AbortController();
    const pending = a.callTool(
      { name: 'execute', arguments: { environment_id: id, code: 'sleep:30000' } },
      undefined,
      {
        signal: controller.signal,
      },
    );
    setTimeout(() => controller.abort(), 500);
    await expect(pending).rejects.toThrow();
    const vmId = (await envObject(nsA, id)).metadata.uid as string;
    await waitFor(
      async () => agent.cancelledExecs,
      (c) => c.includes(vmId),
      'the node-agent to see the cancellation',
      {
        timeoutMs: 10_000,
      },
    );
    await ok(a, 'destroy_environment', { environment_id: id });
  });
});

describe('mcp-gateway HTTP edge', () => {
  const post = (headers: Record<string, string>) =>
    fetch(gateway.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...headers,
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-11-25',
          capabilities: {},
          clientInfo: { name: 'raw', version: '1' },
        },
      }),
    });

  it('refuses a missing or unknown token with 401 and WWW-Authenticate', async () => {
    const none = await post({});
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(((await none.json()) as { error: { message: string } }).error.message).toMatch(
      /missing bearer token/,
    );
    const wrong = await post({ authorization: 'Bearer not-a-real-key-0000000000000000' });
    expect(wrong.status).toBe(401);
  });

  it('refuses a foreign Origin or Host with 403 (DNS rebinding)', async () => {
    const origin = await post({ authorization: `Bearer ${KEY_A}`, origin: 'http://evil.example' });
    expect(origin.status).toBe(403);
    expect(((await origin.json()) as { error: { message: string } }).error.message).toMatch(
      /Origin "http:\/\/evil.example" is not allowed/,
    );
    // fetch will not send a forged Host; a raw HTTP request will (as a rebinding browser does).
    const u = new URL(gateway.url);
    const hostStatus = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: {
            host: 'evil.example',
            authorization: `Bearer ${KEY_A}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
    expect(hostStatus).toBe(403);
    const local = await post({ authorization: `Bearer ${KEY_A}`, origin: 'http://localhost:6274' });
    expect(local.status).toBe(200);
  });

  it('refuses an API key used for another namespace', async () => {
    const r = await post({ authorization: `Bearer ${KEY_A}`, 'x-waggle-namespace': nsB });
    expect(r.status).toBe(403);
    expect(await r.text()).toMatch(/is for namespace/);
  });

  it('accepts ServiceAccount tokens that RBAC allows, in their own namespace only', {
    timeout: 60_000,
  }, async () => {
    const sa = 'agent-sa';
    await core.createNamespacedServiceAccount({ namespace: nsB, body: { metadata: { name: sa } } });
    await core.createNamespacedServiceAccount({ namespace: nsB, body: { metadata: { name: 'no-rbac' } } });
    await rbac.createNamespacedRole({
      namespace: nsB,
      body: {
        metadata: { name: 'waggle-agent' },
        rules: [
          {
            apiGroups: ['waggle.dev'],
            resources: ['waggleenvironments'],
            verbs: ['create', 'get', 'list', 'delete'],
          },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: nsB,
      body: {
        metadata: { name: 'agent-sa' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'waggle-agent' },
        subjects: [{ kind: 'ServiceAccount', name: sa, namespace: nsB }],
      },
    });
    const token = async (name: string) =>
      (
        await core.createNamespacedServiceAccountToken({
          name,
          namespace: nsB,
          body: { spec: { audiences: [], expirationSeconds: 600 } },
        })
      ).status?.token as string;
    const saClient = await connectClient(gateway.url, await token(sa), 'sa-agent');
    try {
      const created = await ok<{ environment_id: string }>(saClient, 'create_environment', {
        runtime: 'python',
      });
      expect(
        (await envObject(nsB, created.environment_id)).metadata.annotations?.['waggle.dev/caller-name'],
      ).toBe(`system:serviceaccount:${nsB}:${sa}`);
      await ok(saClient, 'destroy_environment', { environment_id: created.environment_id });
    } finally {
      await saClient.close();
    }
    const denied = await post({ authorization: `Bearer ${await token('no-rbac')}` });
    expect(denied.status).toBe(403);
    expect(await denied.text()).toMatch(/may not use waggleenvironments in namespace/);
    // Allowed to create only: the gateway must not lend it its own list/delete permissions.
    await core.createNamespacedServiceAccount({
      namespace: nsB,
      body: { metadata: { name: 'create-only' } },
    });
    await rbac.createNamespacedRole({
      namespace: nsB,
      body: {
        metadata: { name: 'create-only' },
        rules: [{ apiGroups: ['waggle.dev'], resources: ['waggleenvironments'], verbs: ['create'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: nsB,
      body: {
        metadata: { name: 'create-only' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'create-only' },
        subjects: [{ kind: 'ServiceAccount', name: 'create-only', namespace: nsB }],
      },
    });
    const partial = await post({ authorization: `Bearer ${await token('create-only')}` });
    expect(partial.status).toBe(403);
    expect(((await partial.json()) as { error: { message: string } }).error.message).toMatch(
      /lacks "get", "list", "delete" on waggleenvironments/,
    );
    const otherNs = await post({ authorization: `Bearer ${await token(sa)}`, 'x-waggle-namespace': nsA });
    expect(otherNs.status).toBe(403);
  });

  it('serves health, readiness and metrics', async () => {
    const base = gateway.url.replace(/\/mcp$/, '');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/waggle_gateway_tool_calls_total\{tool="create_environment",outcome="ok"\} \d+/);
    expect(metrics).toMatch(/waggle_gateway_auth_failures_total\{status="401"\} \d+/);
  });
});
