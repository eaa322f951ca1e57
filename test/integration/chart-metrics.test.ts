// The chart's metrics plumbing, rendered: a Service per component whose port `metrics` reaches a
// container port of that component, ServiceMonitors that each select one of them, the dashboard
// ConfigMap carrying charts/waggle/dashboards/waggle.json, and NetworkPolicies that let a scraper
// reach the metrics ports (and, with metrics.scrapers, only that scraper).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ensureHelm } from '../src/index.ts';

const run = promisify(execFile);
const CHART = join(import.meta.dirname, '..', '..', 'charts', 'waggle');

interface Obj {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}
interface Container {
  name: string;
  ports?: Array<{ name: string; containerPort: number }>;
  env?: Array<{ name: string; value?: string }>;
}
interface ServicePort {
  name: string;
  port: number;
  targetPort: string;
}

let helm: string;
const render = async (...args: string[]): Promise<Obj[]> => {
  const { stdout } = await run(helm, ['template', 'r', CHART, '-n', 'waggle', ...args], {
    maxBuffer: 32 << 20,
  });
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => !!o?.kind);
};
const named = (objects: Obj[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`${kind}/${name} not rendered`);
  return o;
};
const containersOf = (o: Obj) =>
  (o.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers;
const labelsOf = (o: Obj) =>
  (o.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
const selects = (sel: Record<string, string>, labels: Record<string, string> | undefined) =>
  Object.entries(sel).every(([k, v]) => labels?.[k] === v);

const WORKLOADS = {
  operator: ['Deployment', 'r-waggle-operator'],
  gateway: ['Deployment', 'r-waggle-gateway'],
  'node-agent': ['DaemonSet', 'r-waggle-node-agent'],
} as const;

beforeAll(async () => {
  helm = await ensureHelm();
});

describe('the chart’s metrics', () => {
  it('gives each component a Service port `metrics` that reaches its /metrics container port', async () => {
    const objects = await render();
    for (const [component, [kind, name]] of Object.entries(WORKLOADS)) {
      const svc = named(objects, 'Service', `r-waggle-${component}-metrics`);
      const spec = svc.spec as { selector: Record<string, string>; ports: ServicePort[]; clusterIP?: string };
      const workload = named(objects, kind, name);
      expect(selects(spec.selector, labelsOf(workload)), component).toBe(true);
      expect(spec.ports.map((p) => p.name)).toEqual(['metrics']);
      const target = containersOf(workload)[0]?.ports?.find((p) => p.name === spec.ports[0]?.targetPort);
      expect(target, `${component}: targetPort ${spec.ports[0]?.targetPort}`).toBeDefined();
      expect(spec.ports[0]?.port).toBe(target?.containerPort);
      if (component === 'node-agent') expect(spec.clusterIP).toBe('None');
    }
    // The gateway serves metrics on 9090, told so by its environment; its MCP Service has no such port.
    const gw = containersOf(named(objects, 'Deployment', 'r-waggle-gateway'))[0] as Container;
    expect(gw.env).toContainEqual({ name: 'WAGGLE_METRICS_LISTEN', value: '0.0.0.0:9090' });
    expect(gw.ports?.find((p) => p.name === 'metrics')?.containerPort).toBe(9090);
    const mcp = named(objects, 'Service', 'r-waggle-mcp').spec as { ports: ServicePort[] };
    expect(mcp.ports.map((p) => p.name)).toEqual(['mcp']);
    // Off by default: no ServiceMonitor (its CRD may be missing), no dashboard.
    expect(
      objects.filter((o) => o.kind === 'ServiceMonitor' || o.metadata.name === 'r-waggle-dashboard'),
    ).toEqual([]);
  });

  it('renders a ServiceMonitor per component, each selecting its metrics Service, and the dashboard', async () => {
    const objects = await render(
      '--set',
      'metrics.serviceMonitor.enabled=true',
      '--set',
      'metrics.serviceMonitor.interval=15s',
      '--set',
      'metrics.serviceMonitor.labels.release=kube-prometheus-stack',
      '--set',
      'metrics.dashboard.enabled=true',
      '--set',
      'metrics.dashboard.annotations.grafana_folder=Waggle',
      '--set-json',
      'metrics.scrapers=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]',
    );
    const services = objects.filter((o) => o.kind === 'Service');
    const monitors = objects.filter((o) => o.kind === 'ServiceMonitor');
    expect(monitors.map((m) => m.metadata.name).sort()).toEqual([
      'r-waggle-gateway',
      'r-waggle-node-agent',
      'r-waggle-operator',
    ]);
    for (const m of monitors) {
      expect(m.metadata.labels?.release).toBe('kube-prometheus-stack');
      const spec = m.spec as {
        selector: { matchLabels: Record<string, string> };
        namespaceSelector: { matchNames: string[] };
        endpoints: Array<{ port: string; path: string; interval: string; relabelings?: unknown[] }>;
      };
      expect(spec.namespaceSelector.matchNames).toEqual(['waggle']);
      const picked = services.filter((s) => selects(spec.selector.matchLabels, s.metadata.labels));
      expect(picked.map((s) => s.metadata.name)).toEqual([`${m.metadata.name}-metrics`]);
      expect(spec.endpoints).toHaveLength(1);
      expect(spec.endpoints[0]).toMatchObject({ port: 'metrics', path: '/metrics', interval: '15s' });
      // Node-agent series carry their node (the dashboard's "VMs per node").
      if (m.metadata.name === 'r-waggle-node-agent')
        expect(JSON.stringify(spec.endpoints[0]?.relabelings)).toContain('"targetLabel":"node"');
    }

    const dashboard = named(objects, 'ConfigMap', 'r-waggle-dashboard');
    expect(dashboard.metadata.labels?.grafana_dashboard).toBe('1');
    const file = await readFile(join(CHART, 'dashboards', 'waggle.json'), 'utf8');
    expect(JSON.parse(dashboard.data?.['waggle.json'] ?? '')).toEqual(JSON.parse(file));
  });

  it('lets only the scrapers named reach the metrics ports through the NetworkPolicies; by default nobody', async () => {
    type Rule = { ports: Array<{ port: number }>; from?: unknown[] };
    const ingress = (objects: Obj[], name: string) =>
      (named(objects, 'NetworkPolicy', name).spec as { ingress: Rule[] }).ingress;
    const rulesFor = (rules: Rule[], port: number) =>
      rules.filter((r) => r.ports.some((p) => p.port === port));

    // Default: the metrics ports admit nobody (an agent's pod must not read other callers'
    // traffic from the gateway's metrics); the gateway admits only its MCP port, the node-agent
    // only its API (to the operator and gateway).
    const closed = await render();
    expect(rulesFor(ingress(closed, 'r-waggle-gateway'), 9090)).toEqual([]);
    expect(rulesFor(ingress(closed, 'r-waggle-node-agent-ingress'), 7444)).toEqual([]);
    expect(ingress(closed, 'r-waggle-gateway').flatMap((r) => r.ports.map((p) => p.port))).toEqual([8080]);
    expect(ingress(closed, 'r-waggle-node-agent-ingress').flatMap((r) => r.ports.map((p) => p.port))).toEqual(
      [7443],
    );

    const peer = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } };
    const scraped = await render('--set-json', `metrics.scrapers=${JSON.stringify([peer])}`);
    for (const [policy, port] of [
      ['r-waggle-gateway', 9090],
      ['r-waggle-node-agent-ingress', 7444],
    ] as const)
      expect(rulesFor(ingress(scraped, policy), port).map((r) => r.from)).toEqual([[peer]]);

    // ServiceMonitors without scrapers would scrape nothing: refused, saying what to set.
    const refused = await render('--set', 'metrics.serviceMonitor.enabled=true').then(
      () => 'accepted',
      (e: { stderr?: string }) => String(e.stderr),
    );
    expect(refused).toMatch(/metrics\.serviceMonitor\.enabled: .*set metrics\.scrapers|set it/);
  });

  it('refuses a malformed metrics value naming it', async () => {
    for (const [args, field] of [
      [['--set', 'metrics.serviceMonitor.interval=soon'], /interval/],
      [['--set', 'metrics.dashboard.enable=true'], /dashboard/],
      [['--set', 'gateway.metricsPort=0'], /metricsPort/],
    ] as const) {
      const err = await render(...args).then(
        () => 'accepted',
        (e: { stderr?: string }) => String(e.stderr),
      );
      expect(err, args.join(' ')).toMatch(/values don't meet the specifications of the schema/);
      expect(err, args.join(' ')).toMatch(field);
    }
  });
});
