import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { deleteTestNamespace, ensureKubeBinaries, kubeClients } from '../src/index.ts';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..', '..');
const GROUP = 'waggle.dev';
const VERSION = 'v1alpha1';
const ENVS = 'waggleenvironments';
const NODES = 'wagglenodes';

const kubeconfigPath = inject('kubeconfigPath');
const { kc, custom, core } = kubeClients(kubeconfigPath);
const namespace = `crd-test-${randomBytes(3).toString('hex')}`;
let kubectlPath = '';

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run(kubectlPath, args, { env: { ...process.env, KUBECONFIG: kubeconfigPath } });
  return stdout;
}

type Obj = { metadata: { name: string; resourceVersion?: string }; spec: Record<string, unknown> } & Record<
  string,
  unknown
>;

function env(name: string, spec: Record<string, unknown>): Obj {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'WaggleEnvironment', metadata: { name }, spec };
}

/** The coordinates of WaggleEnvironments in this file's namespace, and of WaggleNodes. */
const envs = { group: GROUP, version: VERSION, namespace, plural: ENVS };
const nodes = { group: GROUP, version: VERSION, plural: NODES };

const createEnv = (body: Obj) => custom.createNamespacedCustomObject({ ...envs, body }) as Promise<Obj>;
const getEnv = (name: string) => custom.getNamespacedCustomObject({ ...envs, name }) as Promise<Obj>;
const replaceEnv = (body: Obj) =>
  custom.replaceNamespacedCustomObject({ ...envs, name: body.metadata.name, body }) as Promise<Obj>;

/** Runs a call that must be refused; returns the apiserver's status code and message. */
async function refusal(call: () => Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await call();
  } catch (err) {
    const e = err as { code?: number; body?: unknown };
    const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
    return { code: e.code ?? 0, message: String((body as { message?: string })?.message ?? err) };
  }
  throw new Error('the apiserver accepted a request that should have been rejected');
}

beforeAll(async () => {
  kubectlPath = (await ensureKubeBinaries(['kubectl'])).kubectl;
  await kubectl(
    'apply',
    '--server-side',
    '-f',
    join(REPO, 'crds', 'waggle.dev_waggleenvironments.yaml'),
    '-f',
    join(REPO, 'crds', 'waggle.dev_wagglenodes.yaml'),
  );
  await kubectl(
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    `crd/${ENVS}.${GROUP}`,
    `crd/${NODES}.${GROUP}`,
  );
  await core.createNamespace({ body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await deleteTestNamespace(kc, namespace);
});

describe('the control plane under test', () => {
  it('is a real kube-apiserver v1.36.3', async () => {
    const version = JSON.parse(await kubectl('version', '-o', 'json')) as {
      serverVersion: { gitVersion: string };
    };
    process.stderr.write(`crds.test: talking to kube-apiserver ${version.serverVersion.gitVersion}\n`);
    expect(version.serverVersion.gitVersion).toBe('v1.36.3');
  });
});

describe('WaggleEnvironment admission', () => {
  it('accepts a minimal environment and fills the defaults', async () => {
    const created = await createEnv(env('defaults', { runtime: 'python' }));
    expect(created.spec).toEqual({
      runtime: 'python',
      resources: { cpus: 1, memoryMiB: 512, diskMiB: 2048 },
      idleTimeout: '30m',
      idleAction: 'Delete',
      network: { egress: 'all' },
    });
  });

  it('accepts every field set explicitly', async () => {
    const spec = {
      runtime: 'node',
      displayName: 'analysis sandbox',
      image: 'node-custom',
      resources: { cpus: 2, memoryMiB: 2048, diskMiB: 4096 },
      idleTimeout: '5m',
      idleAction: 'Suspend',
      maxLifetime: '2h',
      network: { egress: 'all', allowDomains: ['pypi.org', '*.pythonhosted.org'] },
      nodeName: 'node-a',
    };
    const created = await createEnv(env('explicit', spec));
    expect(created.spec).toEqual(spec);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['an unknown runtime', { runtime: 'ruby' }, /spec\.runtime: Unsupported value: "ruby"/],
    ['a missing runtime', {}, /spec\.runtime: Required value/],
    [
      'negative memory',
      { runtime: 'python', resources: { memoryMiB: -1 } },
      /spec\.resources\.memoryMiB: Invalid value: -1/,
    ],
    [
      'memory over the maximum',
      { runtime: 'python', resources: { memoryMiB: 65536 } },
      /spec\.resources\.memoryMiB: Invalid value: 65536.*less than or equal to 32768/,
    ],
    ['zero cpus', { runtime: 'python', resources: { cpus: 0 } }, /spec\.resources\.cpus: Invalid value: 0/],
    [
      'cpus as text',
      { runtime: 'python', resources: { cpus: 'two' } },
      /spec\.resources\.cpus: Invalid value: "string"/,
    ],
    [
      'too little memory for the cpus',
      { runtime: 'python', resources: { cpus: 8, memoryMiB: 512 } },
      /spec\.resources\.memoryMiB: .*at least 128 per cpu/,
    ],
    [
      'too much disk',
      { runtime: 'python', resources: { diskMiB: 1_000_000 } },
      /spec\.resources\.diskMiB: Invalid value/,
    ],
    [
      'a malformed idle timeout',
      { runtime: 'python', idleTimeout: 'soon' },
      /spec\.idleTimeout: Invalid value: "soon"/,
    ],
    [
      'a zero idle timeout',
      { runtime: 'python', idleTimeout: '0s' },
      /spec\.idleTimeout: .*must be between 1s and 168h/,
    ],
    [
      'a malformed max lifetime',
      { runtime: 'python', maxLifetime: '2 days' },
      /spec\.maxLifetime: Invalid value: "2 days"/,
    ],
    [
      'an idle timeout longer than the lifetime',
      { runtime: 'python', idleTimeout: '30m', maxLifetime: '10m' },
      /spec\.idleTimeout: .*must not be longer than maxLifetime/,
    ],
    [
      'idleAction Suspend without a max lifetime',
      { runtime: 'python', idleAction: 'Suspend' },
      /spec\.idleAction: .*idleAction Suspend needs maxLifetime: a suspended environment is deleted at its lifetime/,
    ],
    [
      'an unknown idle action',
      { runtime: 'python', idleAction: 'Hibernate' },
      /spec\.idleAction: Unsupported value: "Hibernate"/,
    ],
    [
      'an unknown egress mode',
      { runtime: 'python', network: { egress: 'some' } },
      /spec\.network\.egress: Unsupported value: "some"/,
    ],
    [
      'allowDomains with egress none',
      { runtime: 'python', network: { egress: 'none', allowDomains: ['pypi.org'] } },
      /spec\.network\.allowDomains: .*allowDomains needs egress "all"/,
    ],
    [
      'an allowDomains entry that is not a domain name',
      { runtime: 'python', network: { allowDomains: ['pypi.org', 'http://evil/;rm'] } },
      /spec\.network\.allowDomains\[1\]: Invalid value: "http:\/\/evil\/;rm"/,
    ],
    [
      'an invalid node name',
      { runtime: 'python', nodeName: 'Bad_Node' },
      /spec\.nodeName: Invalid value: "Bad_Node"/,
    ],
  ])('rejects %s, naming the field', async (_what, spec, message) => {
    const r = await refusal(() => createEnv(env(`bad-${randomBytes(3).toString('hex')}`, spec)));
    expect(r.code).toBe(422);
    expect(r.message).toMatch(message);
  });

  it('rejects names longer than 63 characters', async () => {
    const r = await refusal(() => createEnv(env('x'.repeat(64), { runtime: 'shell' })));
    expect(r.code).toBe(422);
    expect(r.message).toMatch(/metadata\.name must be at most 63 characters/);
  });
});

describe('WaggleEnvironment updates', () => {
  it.each<[string, (spec: Record<string, unknown>) => void, RegExp]>([
    [
      'runtime',
      (s) => {
        s.runtime = 'node';
      },
      /spec\.runtime: .*spec\.runtime is immutable/,
    ],
    [
      'resources',
      (s) => {
        s.resources = { cpus: 2, memoryMiB: 1024, diskMiB: 2048 };
      },
      /spec\.resources: .*immutable/,
    ],
    [
      'network',
      (s) => {
        s.network = { egress: 'none' };
      },
      /spec\.network: .*immutable/,
    ],
    [
      'nodeName',
      (s) => {
        s.nodeName = 'node-b';
      },
      /spec\.nodeName is immutable/,
    ],
  ])('refuses to change %s after creation', async (field, mutate, message) => {
    const name = `immutable-${field.toLowerCase()}`;
    await createEnv(env(name, { runtime: 'python' }));
    const current = await getEnv(name);
    mutate(current.spec);
    const r = await refusal(() => replaceEnv(current));
    expect(r.code).toBe(422);
    expect(r.message).toMatch(message);
    expect((await getEnv(name)).spec.runtime).toBe('python');
  });

  it('allows the idle timeout and lifetime to change', async () => {
    await createEnv(env('mutable', { runtime: 'python' }));
    const current = await getEnv('mutable');
    current.spec.idleTimeout = '1h';
    current.spec.maxLifetime = '4h';
    const updated = await replaceEnv(current);
    expect(updated.spec).toMatchObject({ idleTimeout: '1h', maxLifetime: '4h' });
  });
});

describe('status subresource and printer columns', () => {
  it('writes status only through /status and shows it in kubectl get wenv', async () => {
    await createEnv(env('columns', { runtime: 'python' }));
    const current = await getEnv('columns');

    // Status sent to the main endpoint is ignored.
    const ignored = await replaceEnv({ ...current, status: { phase: 'Running' } });
    expect(ignored.status).toBeUndefined();

    const expiresAt = new Date(Date.now() + 30 * 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
    await custom.replaceNamespacedCustomObjectStatus({
      ...envs,
      name: 'columns',
      body: {
        ...ignored,
        status: {
          phase: 'Running',
          nodeName: 'node-a',
          vmId: 'vm-1',
          expiresAt,
          message: 'running on node-a',
          observedGeneration: 1,
          conditions: [
            {
              type: 'Ready',
              status: 'True',
              reason: 'Running',
              message: 'guest is ready',
              lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
            },
          ],
        },
      },
    });

    const table = await kubectl('get', 'wenv', 'columns', '-n', namespace);
    const [header, row] = table.trim().split('\n');
    expect(header?.split(/\s+/)).toEqual(['NAME', 'RUNTIME', 'PHASE', 'NODE', 'EXPIRES', 'AGE']);
    expect(row?.split(/\s+/).slice(0, 4)).toEqual(['columns', 'python', 'Running', 'node-a']);
    expect(row?.split(/\s+/)[4]).toBe(expiresAt); // absolute UTC time: kubectl can't render future dates

    const wide = await kubectl('get', 'waggleenvironments', 'columns', '-n', namespace, '-o', 'wide');
    expect(wide.split('\n')[0]).toMatch(/REASON\s+MESSAGE\s*$/);
    expect(wide.split('\n')[1]).toMatch(/\bRunning\s+running on node-a\s*$/);
  });

  it('rejects an unknown phase in status', async () => {
    await createEnv(env('bad-status', { runtime: 'python' }));
    const current = await getEnv('bad-status');
    const r = await refusal(() =>
      custom.replaceNamespacedCustomObjectStatus({
        ...envs,
        name: 'bad-status',
        body: { ...current, status: { phase: 'Sleeping' } },
      }),
    );
    expect(r.code).toBe(422);
    expect(r.message).toMatch(/status\.phase: Unsupported value: "Sleeping"/);
  });

  it('shows Ready, Accel and VMs for wagglenodes', async () => {
    const name = `node-${randomBytes(3).toString('hex')}`;
    const node = (await custom.createClusterCustomObject({
      ...nodes,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'WaggleNode', metadata: { name } },
    })) as Obj;
    expect(node.spec).toEqual({ unschedulable: false });
    try {
      await custom.replaceClusterCustomObjectStatus({
        ...nodes,
        name,
        body: {
          ...node,
          status: {
            endpoint: 'https://10.0.0.1:9443',
            accelerator: 'tcg',
            capacity: { vms: 4, cpus: 2, memoryMiB: 8192 },
            allocated: { vms: 1, cpus: 1, memoryMiB: 512 },
            vmUsage: '1/4',
            runtimes: ['python', 'shell'],
            lastHeartbeatTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
            conditions: [
              {
                type: 'Ready',
                status: 'True',
                reason: 'AgentReady',
                message: 'heartbeating',
                lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
              },
            ],
          },
        },
      });
      const table = await kubectl('get', 'wagglenodes', name);
      const [header, row] = table.trim().split('\n');
      expect(header?.split(/\s+/)).toEqual(['NAME', 'READY', 'ACCEL', 'VMS', 'AGE']);
      expect(row?.split(/\s+/).slice(0, 4)).toEqual([name, 'True', 'tcg', '1/4']);
    } finally {
      await custom.deleteClusterCustomObject({ ...nodes, name });
    }
  });

  it('rejects an unknown accelerator on a node', async () => {
    const name = `node-${randomBytes(3).toString('hex')}`;
    const node = (await custom.createClusterCustomObject({
      ...nodes,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'WaggleNode', metadata: { name } },
    })) as Obj;
    try {
      const r = await refusal(() =>
        custom.replaceClusterCustomObjectStatus({
          ...nodes,
          name,
          body: { ...node, status: { accelerator: 'hvf' } },
        }),
      );
      expect(r.code).toBe(422);
      expect(r.message).toMatch(/status\.accelerator: Unsupported value: "hvf"/);
    } finally {
      await custom.deleteClusterCustomObject({ ...nodes, name });
    }
  });

  it('lists both kinds under the waggle category', async () => {
    const out = await kubectl('get', 'waggle', '-A', '-o', 'name');
    expect(out).toMatch(/waggleenvironment\.waggle\.dev\/defaults/);
  });
});
