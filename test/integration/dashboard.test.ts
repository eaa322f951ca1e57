// The chart's Grafana dashboard names only metrics the components export: every PromQL expression
// in charts/waggle/dashboards/waggle.json is reduced to its metric names, and each must be a
// series of the operator's, the gateway's or the node-agent's registry (built here as main builds
// them, with stub sources). Here rather than in the unit project because it loads one module of
// each component by path, which only integration tests may do (dependency-rules.test.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGatewayMetrics } from '../../mcp-gateway/src/metrics.ts';
import { createMetrics as createAgentMetrics } from '../../node-agent/src/metrics.ts';
import { createOperatorMetrics } from '../../operator/src/metrics.ts';
import { metricNamesOf } from '../src/promql-names.ts';

const DASHBOARD = join(import.meta.dirname, '..', '..', 'charts', 'waggle', 'dashboards', 'waggle.json');

interface Panel {
  title?: string;
  type: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}

/** Every series name a registry exposes: histograms as _bucket, _sum and _count too. */
/** What the test needs of a prom-client Registry (prom-client is no dependency of the harness). */
interface Registry {
  getMetricsAsJSON(): Promise<Array<{ name: string; type: unknown }>>;
}

async function exported(registry: Registry): Promise<Set<string>> {
  const out = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    out.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(m.name + s);
    if (String(m.type) === 'summary') for (const s of ['_sum', '_count']) out.add(m.name + s);
  }
  return out;
}

async function componentSeries(): Promise<Set<string>> {
  const registries = [
    createOperatorMetrics({
      phases: () => ({}),
      isLeader: () => false,
      leaseName: 'l',
      certificates: () => [],
    }).registry,
    createGatewayMetrics({ sessions: () => 0 }).registry,
    createAgentMetrics().registry,
  ];
  const all = new Set<string>();
  for (const r of registries) for (const n of await exported(r)) all.add(n);
  return all;
}

const queries = (): Array<{ panel: string; expr: string }> => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
  const flat = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  return flat.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ panel: p.title ?? '?', expr: String(t.expr ?? '') })),
  );
};

describe('the Grafana dashboard', () => {
  it('has the panels docs/metrics.md promises, each with a query', () => {
    const titles = queries().map((q) => q.panel);
    for (const t of [
      'Environments by phase',
      'Create latency by path (p50, p95)',
      'VM boot time (p95)',
      'Exec duration (p95)',
      'Tool calls by tool',
      'Tool call errors by tool',
      'Reconciles per controller',
      'Reconcile errors per controller',
      'Reconcile time (p95)',
      'Work queue depth',
      'Work queue latency (p95)',
      'VMs per node',
      'Certificate expiry (days left)',
    ])
      expect(titles).toContain(t);
    for (const q of queries()) expect(q.expr, q.panel).not.toBe('');
  });

  it('names in every query only metrics the components export', async () => {
    const series = await componentSeries();
    expect(series.size).toBeGreaterThan(40); // the registries really were built
    const unknown = queries().flatMap((q) =>
      metricNamesOf(q.expr)
        .filter((n) => !series.has(n))
        .map((n) => `${q.panel}: ${n}`),
    );
    expect(unknown).toEqual([]);
    // And every query names at least one: a parser that found nothing would pass the check above.
    for (const q of queries()) expect(metricNamesOf(q.expr), q.expr).not.toEqual([]);
  });

  it("scopes every series to the release namespace chosen (workqueue_* and controller_runtime_* are also other components' names)", () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      templating: { list: Array<{ name: string; type: string }> };
    };
    expect(dashboard.templating.list.map((v) => v.name)).toContain('namespace');
    const unscoped = queries().flatMap((q) =>
      metricNamesOf(q.expr)
        .filter((n) => !new RegExp(`\\b${n}\\{namespace="\\$namespace"`).test(q.expr))
        .map((n) => `${q.panel}: ${n} in ${q.expr}`),
    );
    expect(unscoped).toEqual([]);
  });
});
