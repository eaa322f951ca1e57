import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1ResourceQuota,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { NamespaceQuotas } from '../../operator/src/quota/namespace-quotas.ts';
import {
  agentServiceAccount,
  applyCRDs,
  type ControlPlane,
  ensureHelm,
  kubeClients,
  renderKubeconfig,
  startControlPlane,
  waitFor,
} from '../src/index.ts';

// The chart's admission policy and the operator's namespace quotas against a real kube-apiserver,
// as the identities that meet them in a cluster: an agent's ServiceAccount token (bound to the
// chart's agent ClusterRole, used with kubectl instead of the gateway), a namespace editor, the
// gateway's and the operator's ServiceAccounts. A control plane of its own: the policies apply
// cluster-wide and would refuse the other integration tests' environments.

const run = promisify(execFile);
const CHART = join(import.meta.dirname, '..', '..', 'charts', 'waggle');
const RELEASE = 'waggle';
const RELEASE_NS = 'waggle-system';
const GROUP = 'waggle.dev';
const VERSION = 'v1alpha1';
const PLURAL = 'waggleenvironments';
const QUOTA = `${RELEASE}-environments`;
const COUNT = 'count/waggleenvironments.waggle.dev';
const LIMIT = 3;

type Env = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    finalizers?: string[];
    resourceVersion?: string;
  };
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
};

let cp: ControlPlane;
let caPem = '';
let quotas: NamespaceQuotas | undefined;
const clients: Record<'admin' | 'agent' | 'editor' | 'gateway' | 'operator', CustomObjectsApi> = {} as never;

const kubectl = async (args: string[], input?: string): Promise<string> => {
  const r = await cp.kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

const kcFor = (token: string): KubeConfig => {
  const kc = new KubeConfig();
  kc.loadFromString(renderKubeconfig({ server: cp.server, caPem, user: 'test', token }));
  return kc;
};

/** A client as ServiceAccount `name` in `namespace` with a Role of its own granting `verbs` on environments. */
const roleClient = async (namespace: string, name: string, verbs: string[]) =>
  kcFor(
    await (await agentServiceAccount(kubeClients(cp.kubeconfigPath), namespace, name, verbs))(),
  ).makeApiClient(CustomObjectsApi);
const env = (
  name: string,
  spec: Record<string, unknown>,
  meta: { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): Env => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'WaggleEnvironment',
  metadata: { name, ...meta },
  spec: { runtime: 'python', ...spec },
});

const coords = (namespace: string) => ({ group: GROUP, version: VERSION, plural: PLURAL, namespace });
const create = (who: keyof typeof clients, namespace: string, body: Env) =>
  clients[who].createNamespacedCustomObject({ ...coords(namespace), body }) as Promise<Env>;
const get = (namespace: string, name: string) =>
  clients.admin.getNamespacedCustomObject({ ...coords(namespace), name }) as Promise<Env>;
const mergePatch = (who: keyof typeof clients, namespace: string, name: string, body: unknown) =>
  clients[who].patchNamespacedCustomObject(
    { ...coords(namespace), name, body },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  ) as Promise<Env>;
const jsonPatch = (who: keyof typeof clients, namespace: string, name: string, body: unknown[]) =>
  clients[who].patchNamespacedCustomObject(
    { ...coords(namespace), name, body },
    setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
  ) as Promise<Env>;

/** Runs a call that must be refused; returns the apiserver's status code and message. */
async function refusal(call: () => Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await call();
  } catch (err) {
    const e = err as { code?: number; body?: unknown };
    const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
    return { code: e.code ?? 0, message: String((body as { message?: string })?.message ?? err) };
  }
  throw new Error('the apiserver accepted a request that should have been refused');
}

const POLICY = `ValidatingAdmissionPolicy '${RELEASE}-environment-limits'`;
const nowTime = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** A namespace with ServiceAccount `agent` bound to the chart's agent ClusterRole; its token. */
async function agentNamespace(namespace: string): Promise<string> {
  await kubectl(['create', 'namespace', namespace]);
  await kubectl(['create', 'serviceaccount', 'agent', '-n', namespace]);
  await kubectl([
    'create',
    'rolebinding',
    'waggle-agent',
    '-n',
    namespace,
    `--clusterrole=${RELEASE}-agent`,
    `--serviceaccount=${namespace}:agent`,
  ]);
  return (await kubectl(['create', 'token', 'agent', '-n', namespace, '--duration=1h'])).trim();
}

const quotaIn = (namespace: string) =>
  cp
    .kubectl(['get', 'resourcequota', QUOTA, '-n', namespace, '-o', 'json'])
    .then((r) => (r.code === 0 ? (JSON.parse(r.stdout) as V1ResourceQuota) : undefined));
// Quota admission refuses every create ("status unknown for quota") until both are in status.
const inForce = (q: V1ResourceQuota | undefined) =>
  q?.status?.hard?.[COUNT] === String(LIMIT) && q.status.used?.[COUNT] !== undefined;

beforeAll(async () => {
  cp = await startControlPlane();
  caPem = await readFile(join(cp.dir, 'pki', 'ca.crt'), 'utf8');
  await applyCRDs(cp.kubeconfigPath);
  clients.admin = kubeClients(cp.kubeconfigPath).custom;

  // Made before the policy exists (as by an older release): the policy must never stand in the
  // way of the operator finishing it, however far it is outside today's limits.
  await kubectl(['create', 'namespace', 'legacy']);
  await create(
    'admin',
    'legacy',
    env(
      'old',
      { resources: { cpus: 8, memoryMiB: 32768, diskMiB: 65536 }, idleTimeout: '100h' },
      { annotations: { 'waggle.dev/last-activity': '2099-01-01T00:00:00Z' } },
    ),
  );

  // The chart as shipped, with a tighter idle ceiling than the lifetime one so both are seen.
  const helm = await ensureHelm();
  const { stdout } = await run(
    helm,
    [
      'template',
      RELEASE,
      CHART,
      '-n',
      RELEASE_NS,
      '--set',
      'limits.maxIdleTimeout=8h',
      '--set',
      `limits.environmentsPerNamespace=${LIMIT}`,
      '--show-only',
      'templates/admission-policy.yaml',
      '--show-only',
      'templates/rbac.yaml',
    ],
    { maxBuffer: 16 << 20 },
  );
  const kinds = parseAllDocuments(stdout)
    .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string } } | null)
    .map((o) => `${o?.kind}/${o?.metadata?.name}`);
  expect(kinds).toEqual(
    expect.arrayContaining([
      `ValidatingAdmissionPolicy/${RELEASE}-environment-limits`,
      `ValidatingAdmissionPolicyBinding/${RELEASE}-environment-limits`,
    ]),
  );
  await kubectl(['create', 'namespace', RELEASE_NS]);
  await kubectl(['apply', '-n', RELEASE_NS, '-f', '-'], stdout);

  const token = async (sa: string) =>
    (await kubectl(['create', 'token', sa, '-n', RELEASE_NS, '--duration=1h'])).trim();
  const operatorKc = kcFor(await token(`${RELEASE}-operator`));
  clients.operator = operatorKc.makeApiClient(CustomObjectsApi);
  clients.gateway = kcFor(await token(`${RELEASE}-gateway`)).makeApiClient(CustomObjectsApi);

  // The operator's quota module, with the operator's own RBAC from the chart.
  quotas = new NamespaceQuotas({
    kc: operatorKc,
    log: pino({ level: 'silent' }),
    quotaName: QUOTA,
    agentClusterRole: `${RELEASE}-agent`,
    limit: LIMIT,
  });
  quotas.start();
  await quotas.synced();

  const agentToken = await agentNamespace('team-a');
  clients.agent = kcFor(agentToken).makeApiClient(CustomObjectsApi);
  // A namespace editor: may also update and patch environments (the agent role cannot).
  clients.editor = await roleClient('team-a', 'editor', ['create', 'get', 'list', 'update', 'patch']);

  // The policy takes effect once the apiserver has loaded it, and creates wait for the quota.
  await waitFor(() => quotaIn('team-a'), inForce, 'the quota in force in team-a', { timeoutMs: 30_000 });
  await waitFor(
    () =>
      refusal(() =>
        clients.agent.createNamespacedCustomObject({
          ...coords('team-a'),
          body: env('probe', { maxLifetime: '1h', nodeName: 'n' }),
          dryRun: 'All',
        }),
      ).catch((e: Error) => ({ code: 0, message: e.message })),
    (r) => r.message.includes(POLICY),
    'the admission policy in force',
    { timeoutMs: 30_000, intervalMs: 250 },
  );
}, 240_000);

afterAll(async () => {
  quotas?.stop();
  await cp?.stop();
});

describe('an agent token used with kubectl instead of the gateway', () => {
  it.each<[string, Record<string, unknown>, RegExp]>([
    [
      '8 vCPUs',
      { maxLifetime: '1h', resources: { cpus: 8, memoryMiB: 32768, diskMiB: 65536 } },
      /spec\.resources\.cpus 8 exceeds this cluster's limit of 4 \(chart value limits\.maxCpus\); ask for at most 4/,
    ],
    [
      '32 GiB of memory',
      { maxLifetime: '1h', resources: { cpus: 1, memoryMiB: 32768, diskMiB: 2048 } },
      /spec\.resources\.memoryMiB 32768 exceeds this cluster's limit of 8192 \(chart value limits\.maxMemoryMiB\)/,
    ],
    [
      '64 GiB of disk',
      { maxLifetime: '1h', resources: { cpus: 1, memoryMiB: 512, diskMiB: 65536 } },
      /spec\.resources\.diskMiB 65536 exceeds this cluster's limit of 16384 \(chart value limits\.maxDiskMiB\)/,
    ],
    [
      'no maxLifetime (never expires while touched)',
      {},
      /spec\.maxLifetime is required on this cluster .*\(chart value\s+limits\.maxLifetime, at most 24h\); set it/,
    ],
    [
      'a week of maxLifetime',
      { maxLifetime: '168h' },
      /spec\.maxLifetime 168h exceeds this cluster's limit of\s+24h \(chart value limits\.maxLifetime\); use at most 24h/,
    ],
    [
      'a huge idleTimeout',
      { maxLifetime: '24h', idleTimeout: '20h' },
      /spec\.idleTimeout 20h exceeds this cluster's limit of\s+8h \(chart value limits\.maxIdleTimeout\); use at most 8h/,
    ],
    [
      'a nodeName pin next to a victim',
      { maxLifetime: '1h', nodeName: 'victim-node' },
      /spec\.nodeName may be set only by the Waggle gateway and operator \(rule: node placement is the\s+scheduler's\); remove spec\.nodeName/,
    ],
  ])('cannot create an environment with %s', async (_what, spec, expected) => {
    const r = await refusal(() => create('agent', 'team-a', env('bypass', spec)));
    expect([403, 422]).toContain(r.code);
    expect(r.message).toContain(POLICY);
    expect(r.message).toMatch(expected);
  });

  it.each<[string, { labels?: Record<string, string>; annotations?: Record<string, string> }, RegExp]>([
    [
      'an activity time in 2099 (never expires)',
      { annotations: { 'waggle.dev/last-activity': '2099-01-01T00:00:00Z' } },
      /metadata\.annotations waggle\.dev\/last-activity may be written only\s+by the Waggle gateway and operator \(rule: activity, caller and preview records are the\s+platform's\)/,
    ],
    [
      "another caller's identity",
      { annotations: { 'waggle.dev/caller-name': 'system:serviceaccount:team-b:agent' } },
      /waggle\.dev\/caller-name may be written only/,
    ],
    [
      'forged preview ports',
      { annotations: { 'waggle.dev/exposed-ports': '[{"port":8000,"public":true}]' } },
      /waggle\.dev\/exposed-ports may be written only/,
    ],
    [
      "another caller's label (the gateway's per-caller count)",
      { labels: { 'waggle.dev/caller': 'c0ffee' } },
      /metadata\.labels waggle\.dev\/caller may be written only by the Waggle gateway and operator\s+\(rule: the caller label is the platform's\); leave it out of your request/,
    ],
  ])('cannot create an environment with %s', async (_what, meta, expected) => {
    const r = await refusal(() => create('agent', 'team-a', env('bypass', { maxLifetime: '1h' }, meta)));
    expect(r.code).toBe(403);
    expect(r.message).toContain(POLICY);
    expect(r.message).toMatch(expected);
  });

  it('can create an environment within the limits, and is not exempt as a cluster admin either', async () => {
    const ok = await create('agent', 'team-a', env('fine', { maxLifetime: '2h', idleTimeout: '30m' }));
    expect(ok.spec.maxLifetime).toBe('2h');
    // Cluster admins get no exemption unless limits.exempt says so.
    const r = await refusal(() =>
      create('admin', 'team-a', env('pinned', { maxLifetime: '1h', nodeName: 'n1' })),
    );
    expect(r.message).toMatch(/spec\.nodeName may be set only by the Waggle gateway and operator/);
  });

  it('cannot create any number of environments: the namespace quota refuses the one past the limit', async () => {
    const token = await agentNamespace('team-count');
    const agent = kcFor(token).makeApiClient(CustomObjectsApi);
    const q = await waitFor(() => quotaIn('team-count'), inForce, 'the quota in force in team-count', {
      timeoutMs: 30_000,
    });
    expect(q?.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('waggle-operator');
    expect(q?.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'ClusterRole',
      name: `${RELEASE}-agent`,
    });
    expect(q?.spec?.hard?.[COUNT]).toBe(String(LIMIT));
    for (let i = 0; i < LIMIT; i++) {
      await agent.createNamespacedCustomObject({
        ...coords('team-count'),
        body: env(`e${i}`, { maxLifetime: '1h' }),
      });
    }
    const r = await refusal(() =>
      agent.createNamespacedCustomObject({
        ...coords('team-count'),
        body: env('one-too-many', { maxLifetime: '1h' }),
      }),
    );
    expect(r.code).toBe(403);
    expect(r.message).toMatch(
      new RegExp(
        `exceeded quota: ${QUOTA}, requested: count/waggleenvironments\\.waggle\\.dev=1, used: count/waggleenvironments\\.waggle\\.dev=${LIMIT}, limited: count/waggleenvironments\\.waggle\\.dev=${LIMIT}`,
      ),
    );
  });

  it('finds the quota in place right after its namespace is bound to the agent role', async () => {
    await kubectl(['create', 'namespace', 'team-quick']);
    const t0 = Date.now();
    await kubectl([
      'create',
      'rolebinding',
      'waggle-agent',
      '-n',
      'team-quick',
      `--clusterrole=${RELEASE}-agent`,
      '--serviceaccount=team-quick:agent',
    ]);
    await waitFor(() => quotaIn('team-quick'), inForce, 'the quota in force in team-quick', {
      timeoutMs: 5_000,
      intervalMs: 50,
    });
    process.stderr.write(
      `admission-policy.test: quota in force ${Date.now() - t0} ms after the RoleBinding\n`,
    );
  });

  it('puts back a usage that kube-controller-manager could not count (fresh CRD): creates are not refused as "status unknown"', async () => {
    const agent = kcFor(await agentNamespace('team-fresh')).makeApiClient(CustomObjectsApi);
    await waitFor(() => quotaIn('team-fresh'), inForce, 'the quota in force in team-fresh', {
      timeoutMs: 5_000,
      intervalMs: 50,
    });
    // What kube-controller-manager's quota controller writes before it has an evaluator for a
    // new CRD: `hard` copied from the spec, `used` without the count.
    await kubectl([
      'patch',
      'resourcequota',
      QUOTA,
      '-n',
      'team-fresh',
      '--subresource=status',
      '--type=json',
      '-p',
      JSON.stringify([{ op: 'replace', path: '/status', value: { hard: { [COUNT]: String(LIMIT) } } }]),
    ]);
    const healed = await waitFor(() => quotaIn('team-fresh'), inForce, 'the count back in status.used', {
      timeoutMs: 5_000,
      intervalMs: 50,
    });
    expect(healed?.status?.used?.[COUNT]).toBe('0');
    await agent.createNamespacedCustomObject({
      ...coords('team-fresh'),
      body: env('after-heal', { maxLifetime: '1h' }),
    });
  });

  it('counts from the first environment in a namespace reached through other RBAC (the documented window)', async () => {
    // Access through a Role of its own, not the agent ClusterRole: nothing tells the operator
    // about the namespace until its first environment.
    await kubectl(['create', 'namespace', 'team-new']);
    const agent = await roleClient('team-new', 'agent', ['create', 'get', 'list']);
    await agent.createNamespacedCustomObject({
      ...coords('team-new'),
      body: env('first', { maxLifetime: '1h' }),
    });
    await waitFor(() => quotaIn('team-new'), inForce, 'the quota in force in team-new', {
      timeoutMs: 10_000,
    });
    expect((await quotaIn('team-new'))?.status?.used?.[COUNT]).toBe('1');
    for (const n of ['second', 'third']) {
      await agent.createNamespacedCustomObject({
        ...coords('team-new'),
        body: env(n, { maxLifetime: '1h' }),
      });
    }
    const r = await refusal(() =>
      agent.createNamespacedCustomObject({
        ...coords('team-new'),
        body: env('fourth', { maxLifetime: '1h' }),
      }),
    );
    expect(r.message).toMatch(new RegExp(`exceeded quota: ${QUOTA}`));
  });
});

describe('a namespace editor updating environments', () => {
  let name = '';
  beforeAll(async () => {
    const made = await create(
      'gateway',
      'team-a',
      env(
        'gw-made',
        { maxLifetime: '24h', idleTimeout: '30m' },
        {
          labels: { 'waggle.dev/caller': 'c0ffee' },
          annotations: { 'waggle.dev/caller-name': 'system:serviceaccount:team-a:agent' },
        },
      ),
    );
    name = made.metadata.name;
  });

  it.each<[string, () => Promise<unknown>, RegExp]>([
    [
      'dates its activity 2099',
      () =>
        mergePatch('editor', 'team-a', name, {
          metadata: { annotations: { 'waggle.dev/last-activity': '2099-01-01T00:00:00Z' } },
        }),
      /waggle\.dev\/last-activity may be written only/,
    ],
    [
      'takes it over (caller label)',
      () => mergePatch('editor', 'team-a', name, { metadata: { labels: { 'waggle.dev/caller': 'mine' } } }),
      /metadata\.labels waggle\.dev\/caller may be written only/,
    ],
    [
      'removes the caller name',
      () =>
        mergePatch('editor', 'team-a', name, {
          metadata: { annotations: { 'waggle.dev/caller-name': null } },
        }),
      /waggle\.dev\/caller-name may be written only/,
    ],
    [
      'removes maxLifetime',
      () => jsonPatch('editor', 'team-a', name, [{ op: 'remove', path: '/spec/maxLifetime' }]),
      /spec\.maxLifetime is required on this cluster and may not be removed/,
    ],
    [
      'raises maxLifetime past the ceiling',
      () => mergePatch('editor', 'team-a', name, { spec: { maxLifetime: '100h' } }),
      /spec\.maxLifetime 100h exceeds this cluster's limit/,
    ],
    [
      'raises idleTimeout past the ceiling',
      () => mergePatch('editor', 'team-a', name, { spec: { idleTimeout: '9h' } }),
      /spec\.idleTimeout 9h exceeds this cluster's limit of\s+8h/,
    ],
  ])('is refused when it %s', async (_what, call, expected) => {
    const r = await refusal(call);
    expect(r.message).toContain(POLICY);
    expect(r.message).toMatch(expected);
  });

  it('may change what is not the platform’s (its own labels, a shorter idle timeout)', async () => {
    const e = await mergePatch('editor', 'team-a', name, {
      metadata: { labels: { team: 'data' } },
      spec: { idleTimeout: '10m' },
    });
    expect(e.metadata.labels?.team).toBe('data');
    expect(e.metadata.labels?.['waggle.dev/caller']).toBe('c0ffee');
  });
});

describe('the gateway and the operator', () => {
  // Not bound to the agent role: the gateway's first environment is what shows the namespace.
  beforeAll(async () => {
    await kubectl(['create', 'namespace', 'team-gw']);
  });

  it("create, touch, extend and expose the gateway's way", async () => {
    // The object EnvironmentService.create builds, with the chart's default limits.
    const made = await create('gateway', 'team-gw', {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'WaggleEnvironment',
      metadata: {
        name: 'env-gateway0000000001',
        labels: { 'waggle.dev/caller': 'c0ffee', 'app.kubernetes.io/managed-by': 'waggle-mcp-gateway' },
        annotations: { 'waggle.dev/caller-name': 'system:serviceaccount:team-a:agent' },
      },
      spec: {
        runtime: 'python',
        resources: { cpus: 1, memoryMiB: 512, diskMiB: 2048 },
        idleTimeout: '30m',
        maxLifetime: '24h',
        network: { egress: 'all' },
      },
    });
    const name = made.metadata.name;
    // ActivityRecorder.touch
    await mergePatch('gateway', 'team-gw', name, {
      metadata: { annotations: { 'waggle.dev/last-activity': nowTime() } },
    });
    // extend_environment
    const extended = await mergePatch('gateway', 'team-gw', name, {
      metadata: { annotations: { 'waggle.dev/last-activity': nowTime() } },
      spec: { idleTimeout: '120m' },
    });
    expect(extended.spec.idleTimeout).toBe('120m');
    // expose_port
    await mergePatch('gateway', 'team-gw', name, {
      metadata: { annotations: { 'waggle.dev/exposed-ports': '[{"port":8000,"public":false}]' } },
    });
    // A placement pin is the gateway's (and operator's) to make.
    await create('gateway', 'team-gw', env('pinned-by-gateway', { maxLifetime: '1h', nodeName: 'node-a' }));
  });

  it('cannot date activity in the future (the API server stamps the time of each write)', async () => {
    const r = await refusal(() =>
      mergePatch('gateway', 'team-gw', 'env-gateway0000000001', {
        metadata: { annotations: { 'waggle.dev/last-activity': '2099-01-01T00:00:00Z' } },
      }),
    );
    expect(r.message).toMatch(
      /waggle\.dev\/last-activity 2099-01-01T00:00:00Z is in the\s+future \(rule: activity is never later than the time of this write plus 1m of clock skew\)/,
    );
    const onCreate = await refusal(() =>
      create(
        'gateway',
        'team-gw',
        env(
          'future',
          { maxLifetime: '1h' },
          { annotations: { 'waggle.dev/last-activity': '2099-01-01T00:00:00Z' } },
        ),
      ),
    );
    expect(onCreate.message).toMatch(/is in the\s+future/);
    const garbage = await refusal(() =>
      create(
        'gateway',
        'team-gw',
        env('garbage', { maxLifetime: '1h' }, { annotations: { 'waggle.dev/last-activity': 'soon' } }),
      ),
    );
    expect(garbage.message).toMatch(/waggle\.dev\/last-activity "soon" is not\s+an RFC 3339 UTC time/);
  });

  it('are not refused the gateway’s limits either: 8 vCPUs are 8 vCPUs', async () => {
    const r = await refusal(() =>
      create(
        'gateway',
        'team-gw',
        env('big', { maxLifetime: '1h', resources: { cpus: 8, memoryMiB: 8192, diskMiB: 2048 } }),
      ),
    );
    expect(r.message).toMatch(/spec\.resources\.cpus 8 exceeds this cluster's limit of 4/);
  });

  it('finish an environment made before the policy, far outside it: finalizer, status, delete', async () => {
    let old = await get('legacy', 'old');
    old = (await clients.operator.replaceNamespacedCustomObject({
      ...coords('legacy'),
      name: 'old',
      body: { ...old, metadata: { ...old.metadata, finalizers: ['waggle.dev/vm'] } },
    })) as Env;
    old = (await clients.operator.replaceNamespacedCustomObjectStatus({
      ...coords('legacy'),
      name: 'old',
      body: { ...old, status: { phase: 'Running', nodeName: 'node-a', vmId: 'vm-1' } },
    })) as Env;
    expect(old.status?.nodeName).toBe('node-a');
    await clients.operator.deleteNamespacedCustomObject({ ...coords('legacy'), name: 'old' });
    await jsonPatch('operator', 'legacy', 'old', [{ op: 'remove', path: '/metadata/finalizers' }]);
    await waitFor(
      () =>
        get('legacy', 'old').then(
          () => 'present',
          () => 'gone',
        ),
      (v) => v === 'gone',
      'the legacy environment deleted',
      { timeoutMs: 10_000 },
    );
  });
});

describe('the quota module', () => {
  it('puts a raised quota back to the configured limit', async () => {
    await kubectl([
      'patch',
      'resourcequota',
      QUOTA,
      '-n',
      'team-a',
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { hard: { [COUNT]: '1000' } } }),
    ]);
    await waitFor(
      () => quotaIn('team-a'),
      (q) => q?.spec?.hard?.[COUNT] === String(LIMIT),
      'the quota back at the limit',
      { timeoutMs: 10_000 },
    );
  });

  it('leaves namespaces alone that are neither bound to the agent role nor hold environments', async () => {
    await kubectl(['create', 'namespace', 'unrelated']);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await quotaIn('unrelated')).toBeUndefined();
    const list = await kubeClients(cp.kubeconfigPath).core.listResourceQuotaForAllNamespaces();
    // legacy and team-gw: they held environments (made by an admin and by the gateway).
    expect(list.items.map((q) => q.metadata?.namespace).sort()).toEqual([
      'legacy',
      'team-a',
      'team-count',
      'team-fresh',
      'team-gw',
      'team-new',
      'team-quick',
    ]);
  });
});

describe('the chart', () => {
  it("refuses to render limits that would refuse the gateway's own environments", async () => {
    const helm = await ensureHelm();
    const render = (...set: string[]) =>
      run(helm, ['template', RELEASE, CHART, ...set.flatMap((v) => ['--set', v])]).then(
        () => 'rendered',
        (e: { stderr?: string }) => String(e.stderr),
      );
    expect(await render('limits.maxLifetime=12h')).toMatch(
      /gateway\.maxLifetime \(24h\) is longer than limits\.maxLifetime \(12h\): the gateway's environments would be refused/,
    );
    expect(await render('limits.maxIdleTimeout=10m')).toMatch(
      /gateway\.defaultTimeoutMinutes \(30\) is longer than limits\.maxIdleTimeout \(10m\)/,
    );
    expect(await render('limits.maxCpus=9')).toMatch(/limits.*maxCpus/);
    expect(
      await render('limits.maxLifetime=1h30m', 'gateway.maxLifetime=90m', 'gateway.defaultTimeoutMinutes=90'),
    ).toBe('rendered');
  });
});

describe('limits.exempt (last: it changes the policy)', () => {
  it('lets a break-glass group through and nobody else', async () => {
    const helm = await ensureHelm();
    const { stdout } = await run(helm, [
      'template',
      RELEASE,
      CHART,
      '-n',
      RELEASE_NS,
      '--set',
      'limits.exempt.groups={system:masters}',
      '--show-only',
      'templates/admission-policy.yaml',
    ]);
    expect(stdout).toContain('name: not-exempt');
    await kubectl(['apply', '-f', '-'], stdout);
    const pinned = env('admin-pinned', { nodeName: 'node-a' });
    await waitFor(
      () =>
        create('admin', 'team-gw', pinned).then(
          () => 'created',
          (e: { body?: string }) => String(e.body),
        ),
      (v) => v === 'created',
      'an exempt admin creating a pinned environment without maxLifetime',
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    const r = await refusal(() =>
      create('agent', 'team-a', env('still-not', { maxLifetime: '1h', nodeName: 'n' })),
    );
    expect(r.message).toMatch(/spec\.nodeName may be set only by the Waggle gateway and operator/);
  });
});
