// The chart installed with non-default values on a cluster we did not build: selectors,
// tolerations, pull secrets, name overrides, images by digest, extra environment — rendered, checked
// object by object, and accepted by a real kube-apiserver (`helm install --dry-run=server`).
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ensureHelm, kubeClients } from '../src/index.ts';

const run = promisify(execFile);
const CHART = join(import.meta.dirname, '..', '..', 'charts', 'waggle');
const NS = 'acme-sandboxes';
const kubeconfigPath = inject('kubeconfigPath');
const { core } = kubeClients(kubeconfigPath);

const DIGEST = `sha256:${'0123456789abcdef'.repeat(4)}`;
const VALUES = {
  nameOverride: 'sandbox',
  fullnameOverride: 'acme-waggle',
  imagePullSecrets: [{ name: 'regcred' }],
  images: {
    operator: { repository: 'registry.example.com/acme/waggle-operator', tag: '1.2.3' },
    gateway: { repository: 'registry.example.com/acme/waggle-gateway', digest: DIGEST },
    nodeAgent: { repository: 'registry.example.com/acme/waggle-node-agent' },
    pullPolicy: 'Always',
  },
  operator: {
    nodeSelector: { 'acme.example.com/pool': 'control' },
    tolerations: [{ key: 'acme.example.com/control', operator: 'Exists', effect: 'NoSchedule' }],
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key: 'acme.example.com/zone', operator: 'Exists' }] }],
        },
      },
    },
    priorityClassName: 'acme-high',
    podAnnotations: { 'acme.example.com/owner': 'platform' },
    // A label that tries to take over a selector label is ignored.
    podLabels: { team: 'platform', 'app.kubernetes.io/component': 'hijack' },
    extraEnv: [{ name: 'WAGGLE_RESYNC', value: '10m' }],
  },
  gateway: {
    nodeSelector: { 'acme.example.com/pool': 'edge' },
    podLabels: { team: 'platform' },
    defaultResources: { cpus: 2, memoryMiB: 2048 },
    extraEnv: [{ name: 'HTTPS_PROXY', value: 'http://proxy.acme.example.com:3128' }],
  },
  nodeAgent: {
    tolerations: [{ key: 'waggle.dev/vms', operator: 'Exists', effect: 'NoSchedule' }],
    priorityClassName: 'system-node-critical',
    podAnnotations: { 'acme.example.com/scrape': 'true' },
    installTimeout: '20m',
  },
  tests: { runtime: 'shell' },
};

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Record<string, unknown> & {
    selector?: { matchLabels?: Record<string, string> } | Record<string, string>;
    podSelector?: { matchLabels?: Record<string, string> };
    template?: {
      metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
      spec: PodSpec;
    };
  };
  roleRef?: { name: string };
}
interface Container {
  name: string;
  image: string;
  imagePullPolicy?: string;
  env?: Array<{ name: string; value?: string }>;
}
interface PodSpec {
  imagePullSecrets?: Array<{ name: string }>;
  nodeSelector?: Record<string, string>;
  tolerations?: unknown[];
  affinity?: Record<string, unknown>;
  priorityClassName?: string;
  containers: Container[];
}

let helm: string;
let valuesFile: string;
const helmRun = async (args: string[]) =>
  (
    await run(helm, args, { env: { ...process.env, KUBECONFIG: kubeconfigPath }, maxBuffer: 32 << 20 }).catch(
      (e: { stderr?: string; message: string }) => {
        throw new Error(`helm ${args[0]} failed: ${e.stderr || e.message}`);
      },
    )
  ).stdout;
const render = async (args: string[]) =>
  parseAllDocuments(await helmRun(['template', 'acme', CHART, '-n', NS, '--skip-tests=false', ...args]))
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => !!o?.kind);

const podSpecOf = (o: K8sObject): PodSpec | undefined =>
  o.kind === 'Pod' ? (o.spec as unknown as PodSpec) : o.spec?.template?.spec;
const podLabelsOf = (o: K8sObject) =>
  o.kind === 'Pod' ? o.metadata.labels : o.spec?.template?.metadata.labels;
const find = (objects: K8sObject[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o)
    throw new Error(
      `${kind}/${name} not rendered; have ${objects.map((x) => `${x.kind}/${x.metadata.name}`)}`,
    );
  return o;
};
const subset = (small: Record<string, string> | undefined, big: Record<string, string> | undefined) =>
  !!small && Object.keys(small).length > 0 && Object.entries(small).every(([k, v]) => big?.[k] === v);

beforeAll(async () => {
  helm = await ensureHelm();
  valuesFile = join(tmpdir(), `waggle-chart-values-${process.pid}.yaml`);
  await writeFile(valuesFile, JSON.stringify(VALUES));
  await core.createNamespace({ body: { metadata: { name: NS } } }).catch(() => undefined);
});
afterAll(async () => {
  await core.deleteNamespace({ name: NS }).catch(() => undefined);
});

describe('the chart with non-default values', () => {
  it('renders every pod with the pull secrets, images, placement and labels asked for', async () => {
    const objects = await render(['-f', valuesFile]);
    // Names: fullnameOverride; the app.kubernetes.io/name label: nameOverride.
    for (const o of objects) {
      expect(o.metadata.name, `${o.kind}/${o.metadata.name}`).toMatch(/^acme-waggle-/);
      expect(o.metadata.labels?.['app.kubernetes.io/name'], `${o.kind}/${o.metadata.name}`).toBe('sandbox');
    }
    const workloads = objects.filter((o) => podSpecOf(o));
    expect(workloads.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'DaemonSet/acme-waggle-node-agent',
      'Deployment/acme-waggle-gateway',
      'Deployment/acme-waggle-operator',
      'Job/acme-waggle-cleanup',
      'Job/acme-waggle-drain',
      'Pod/acme-waggle-test',
    ]);
    for (const o of workloads) {
      const spec = podSpecOf(o) as PodSpec;
      expect(spec.imagePullSecrets, `${o.kind}/${o.metadata.name}`).toEqual([{ name: 'regcred' }]);
      for (const c of spec.containers) expect(c.imagePullPolicy).toBe('Always');
    }

    const image = (kind: string, name: string) =>
      (podSpecOf(find(objects, kind, name)) as PodSpec).containers[0]?.image;
    expect(image('Deployment', 'acme-waggle-operator')).toBe(
      'registry.example.com/acme/waggle-operator:1.2.3',
    );
    expect(image('Job', 'acme-waggle-drain')).toBe('registry.example.com/acme/waggle-operator:1.2.3');
    expect(image('Deployment', 'acme-waggle-gateway')).toBe(
      `registry.example.com/acme/waggle-gateway@${DIGEST}`,
    );
    expect(image('Pod', 'acme-waggle-test')).toBe(`registry.example.com/acme/waggle-gateway@${DIGEST}`);
    const { appVersion } = parse(await readFile(join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string };
    expect(image('DaemonSet', 'acme-waggle-node-agent')).toBe(
      `registry.example.com/acme/waggle-node-agent:${appVersion}`,
    );

    const operator = find(objects, 'Deployment', 'acme-waggle-operator');
    const op = podSpecOf(operator) as PodSpec;
    expect(op.nodeSelector).toEqual(VALUES.operator.nodeSelector);
    expect(op.tolerations).toEqual(VALUES.operator.tolerations);
    expect(op.affinity).toEqual(VALUES.operator.affinity); // replaces the default spread
    expect(op.priorityClassName).toBe('acme-high');
    expect(operator.spec?.template?.metadata.annotations).toEqual({ 'acme.example.com/owner': 'platform' });
    expect(podLabelsOf(operator)).toEqual({
      'app.kubernetes.io/name': 'sandbox',
      'app.kubernetes.io/instance': 'acme',
      'app.kubernetes.io/component': 'operator',
      team: 'platform',
    });
    // extraEnv comes after the chart's own variables (a setting the chart has no value for).
    expect(op.containers[0]?.env?.at(-1)).toEqual({ name: 'WAGGLE_RESYNC', value: '10m' });
    // The uninstall hooks run where the operator may run.
    expect(podSpecOf(find(objects, 'Job', 'acme-waggle-drain'))?.tolerations).toEqual(
      VALUES.operator.tolerations,
    );

    const gateway = podSpecOf(find(objects, 'Deployment', 'acme-waggle-gateway')) as PodSpec;
    expect(gateway.nodeSelector).toEqual(VALUES.gateway.nodeSelector);
    expect(gateway.affinity, 'the default spread of replicas stays').toHaveProperty('podAntiAffinity');
    const gwEnv = Object.fromEntries((gateway.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(gwEnv).toMatchObject({
      WAGGLE_DEFAULT_CPUS: '2',
      WAGGLE_DEFAULT_MEMORY_MB: '2048',
      HTTPS_PROXY: 'http://proxy.acme.example.com:3128',
    });

    const agentSet = find(objects, 'DaemonSet', 'acme-waggle-node-agent');
    const agent = podSpecOf(agentSet) as PodSpec;
    expect(agent.nodeSelector, 'the default node selector stays').toEqual({
      'waggle.dev/kvm-capable': 'true',
    });
    expect(agent.tolerations).toEqual(VALUES.nodeAgent.tolerations);
    expect(agent.priorityClassName).toBe('system-node-critical');
    expect(agentSet.spec?.template?.metadata.annotations).toEqual({ 'acme.example.com/scrape': 'true' });
    expect(agent.containers[0]?.env).toContainEqual({ name: 'WAGGLE_INSTALL_TIMEOUT', value: '20m' });

    // Every selector still finds its pods: workloads, Services, PDBs, NetworkPolicies.
    for (const o of objects.filter((x) => x.kind === 'Deployment' || x.kind === 'DaemonSet')) {
      const sel = (o.spec?.selector as { matchLabels?: Record<string, string> } | undefined)?.matchLabels;
      expect(subset(sel, podLabelsOf(o)), `${o.kind}/${o.metadata.name}`).toBe(true);
    }
    const podsLabelled = (sel: Record<string, string> | undefined) =>
      workloads.filter((w) => subset(sel, podLabelsOf(w))).map((w) => w.metadata.name);
    expect(
      podsLabelled(find(objects, 'Service', 'acme-waggle-mcp').spec?.selector as Record<string, string>),
    ).toEqual(['acme-waggle-gateway']);
    for (const o of objects.filter((x) => x.kind === 'PodDisruptionBudget' || x.kind === 'NetworkPolicy')) {
      const sel =
        o.kind === 'NetworkPolicy'
          ? o.spec?.podSelector?.matchLabels
          : (o.spec?.selector as { matchLabels?: Record<string, string> } | undefined)?.matchLabels;
      expect(podsLabelled(sel), `${o.kind}/${o.metadata.name} selects no pod`).toHaveLength(1);
    }

    // The helm test pod reaches the renamed Service and is bound to the renamed agent role.
    const testPod = podSpecOf(find(objects, 'Pod', 'acme-waggle-test')) as PodSpec;
    expect(testPod.containers[0]?.env).toContainEqual({
      name: 'WAGGLE_MCP_URL',
      value: 'http://$(ACME_WAGGLE_MCP_SERVICE_HOST):8080/mcp',
    });
    expect(testPod.containers[0]?.env).toContainEqual({ name: 'WAGGLE_TEST_RUNTIME', value: 'shell' });
    const binding = find(objects, 'RoleBinding', 'acme-waggle-test');
    expect(binding.roleRef?.name).toBe('acme-waggle-agent');
    find(objects, 'ClusterRole', 'acme-waggle-agent');
  });

  it('refuses extraEnv naming a variable the chart sets (one name twice breaks server-side apply), listing every one', async () => {
    // Every variable each component's template can set: all optional settings on.
    const everything = [
      '--set-json',
      `gateway.apiKeys.keys=[{"name":"x","namespace":"a","sha256":"${'a'.repeat(64)}"}]`,
      '--set-json',
      'gateway.defaultResources={"cpus":1,"memoryMiB":512}',
      '--set',
      'gateway.defaultNetwork=none',
      '--set',
      'gateway.publicUrl=https://waggle.example.com',
      '--set-json',
      'gateway.allowedHosts=["waggle.example.com"]',
      '--set-json',
      'gateway.allowedOrigins=["https://app.example.com"]',
      '--set-json',
      'nodeAgent.capacity={"cpus":2,"memoryMiB":2048}',
      '--set-json',
      'nodeAgent.guestImages={"python":"r.example.com/p:1","node":"r.example.com/n:1","shell":"r.example.com/s:1"}',
      '--set-json',
      'nodeAgent.images={"allow":["r.example.com/"],"insecureRegistries":["r.example.com"],"pullSecrets":[],"cacheMiB":1024,"maxMiB":512}',
      '--set-json',
      'nodeAgent.egress.allowCIDRs=["10.0.0.0/8"]',
      '--set-json',
      'nodeAgent.egress.denyCIDRs=["1.0.0.0/8"]',
    ];
    const envNames = (objects: K8sObject[]) => {
      const names = new Map<string, Set<string>>();
      for (const o of objects.filter((x) => x.kind === 'Deployment' || x.kind === 'DaemonSet')) {
        for (const c of (podSpecOf(o) as PodSpec).containers) {
          const set = names.get(c.name) ?? new Set<string>();
          for (const e of c.env ?? []) set.add(e.name);
          names.set(c.name, set);
        }
      }
      return names;
    };
    const all = envNames(await render(everything));
    for (const [name, set] of envNames(
      await render(['--set-json', 'nodeAgent.egress.dnsUpstreams=["192.0.2.53"]']),
    )) {
      for (const n of set) all.get(name)?.add(n);
    }
    expect([...all.keys()].sort()).toEqual(['gateway', 'node-agent', 'operator']);
    for (const [container, key] of [
      ['operator', 'operator'],
      ['gateway', 'gateway'],
      ['node-agent', 'nodeAgent'],
    ] as const) {
      const names = [...(all.get(container) ?? [])];
      expect(names.length, container).toBeGreaterThan(20);
      const err = await render([
        ...everything,
        '--set-json',
        `${key}.extraEnv=${JSON.stringify([...names.map((name) => ({ name, value: 'x' })), { name: 'HTTPS_PROXY', value: 'x' }])}`,
      ]).then(
        () => 'accepted',
        (e: Error) => e.message,
      );
      expect(err).toContain(`${key}.extraEnv sets `);
      // Each variable the template sets is on its list (a new one must be added to $managedEnv).
      const listed = /extraEnv sets (.*), which the chart sets itself/.exec(err)?.[1]?.split(', ') ?? [];
      expect(listed.sort(), `charts/waggle/templates: $managedEnv of ${container}`).toEqual(names.sort());
    }
  });

  it('is accepted by a real kube-apiserver (helm install --dry-run=server)', async () => {
    const out = await helmRun([
      'install',
      'acme',
      CHART,
      '-n',
      NS,
      '-f',
      valuesFile,
      '--skip-crds',
      '--dry-run=server',
    ]);
    expect(out).toMatch(/STATUS: pending-install/);
    expect(out).toContain('registry.example.com/acme/waggle-operator:1.2.3');
  });

  it('defaults every image tag to the chart appVersion, never latest', async () => {
    const { appVersion } = parse(await readFile(join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string };
    const images = (await render([])).flatMap((o) => podSpecOf(o)?.containers.map((c) => c.image) ?? []);
    expect(images.length).toBeGreaterThanOrEqual(6);
    for (const i of images)
      expect(i).toMatch(new RegExp(`^ghcr\\.io/waggle-dev/[a-z-]+:${appVersion.replaceAll('.', '\\.')}$`));
  });

  it('refuses malformed placement, pull-secret and image values naming the field', async () => {
    const bad: Array<[string[], RegExp]> = [
      [['--set', 'imagePullSecrets[0].nam=regcred'], /imagePullSecrets/],
      [['--set', 'operator.podLabels.team=not ok'], /podLabels/],
      [['--set', 'images.operator.tag=1.2 3'], /images.*operator.*tag|tag/],
      [['--set', 'images.gateway.digest=md5:abc'], /digest/],
      [['--set', 'gateway.extraEnv[0].value=x'], /extraEnv/],
      [['--set', 'nodeAgent.tolerations[0].operator=Maybe'], /tolerations/],
      [['--set', 'fullnameOverride=Acme_Waggle'], /fullnameOverride/],
    ];
    // Two listeners on one port would render and then crash-loop on EADDRINUSE.
    for (const [args, msg] of [
      [['--set', 'gateway.metricsPort=8080'], /gateway\.port and gateway\.metricsPort are both 8080/],
      [['--set', 'nodeAgent.opsPort=7443'], /nodeAgent\.port and nodeAgent\.opsPort are both 7443/],
    ] as const) {
      const err = await helmRun(['template', 'acme', CHART, ...args]).then(
        () => 'accepted',
        (e: Error) => e.message,
      );
      expect(err, args.join(' ')).toMatch(msg);
    }
    for (const [args, field] of bad) {
      const err = await helmRun(['template', 'acme', CHART, ...args]).then(
        () => 'accepted',
        (e: Error) => e.message,
      );
      expect(err, args.join(' ')).toMatch(/values don't meet the specifications of the schema/);
      expect(err, args.join(' ')).toMatch(field);
    }
  });
});
