import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createOperatorMetrics } from './metrics.ts';
import { createAgentCA, issueLeaf } from './pki/leaf-certificates.ts';
import { Controller, TerminalError } from './runtime/controller.ts';

const log = pino({ level: 'silent' });
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
const sources = {
  phases: () => ({ Running: 2, Pending: 1 }),
  isLeader: () => true,
  leaseName: 'waggle-operator',
  certificates: () => [],
};

describe('operator metrics', () => {
  it('counts every reconcile of a controller by result, with its time and queue, in controller-runtime names', async () => {
    const m = createOperatorMetrics(sources);
    const c = new Controller({
      name: 'widgets',
      log,
      baseDelayMs: 1,
      metrics: m.runtime,
      reconcile: async (key) => {
        if (key === 'fails-once' && !failed.has(key)) {
          failed.add(key);
          throw new Error('transient');
        }
        if (key === 'broken') throw new TerminalError('no');
        if (key === 'timer') return { requeueAfterMs: 60_000 };
        return undefined;
      },
    });
    const failed = new Set<string>();
    for (const k of ['ok', 'fails-once', 'broken', 'timer']) c.enqueue(k);
    c.enqueue('ok'); // collapses: one add
    c.start();
    await tick(50);
    await c.stop();
    const text = await m.registry.metrics();
    const line = (re: RegExp) => expect(text).toMatch(re);
    line(/^controller_runtime_reconcile_total\{controller="widgets",result="success"\} 2$/m);
    line(/^controller_runtime_reconcile_total\{controller="widgets",result="error"\} 2$/m);
    line(/^controller_runtime_reconcile_total\{controller="widgets",result="requeue_after"\} 1$/m);
    line(/^controller_runtime_reconcile_errors_total\{controller="widgets"\} 2$/m);
    line(/^controller_runtime_terminal_reconcile_errors_total\{controller="widgets"\} 1$/m);
    line(/^controller_runtime_reconcile_time_seconds_count\{controller="widgets"\} 5$/m);
    line(/^workqueue_adds_total\{name="widgets"\} 5$/m); // four keys, and the retry
    line(/^workqueue_retries_total\{name="widgets"\} 1$/m);
    line(/^workqueue_queue_duration_seconds_count\{name="widgets"\} 5$/m);
    line(/^workqueue_work_duration_seconds_count\{name="widgets"\} 5$/m);
    line(/^workqueue_depth\{name="widgets"\} 0$/m);
  });

  it('reports queue depth while keys wait', async () => {
    const m = createOperatorMetrics(sources);
    const c = new Controller({ name: 'idle', log, metrics: m.runtime, reconcile: async () => undefined });
    c.enqueue('a');
    c.enqueue('b');
    expect(await m.registry.metrics()).toMatch(/^workqueue_depth\{name="idle"\} 2$/m);
    await c.stop();
  });

  it('reports leadership, environments by phase and certificate expiry at scrape time', async () => {
    const ca = await createAgentCA('waggle-agent-ca', 86_400_000);
    const now = new Date();
    const leaf = await issueLeaf(ca, { cn: 'waggle-operator', usage: 'client' }, 3_600_000, now);
    const m = createOperatorMetrics({ ...sources, certificates: () => [leaf.certPem, ca.certPem] });
    const text = await m.registry.metrics();
    expect(text).toMatch(/^leader_election_master_status\{name="waggle-operator"\} 1$/m);
    expect(text).toMatch(/^waggle_environments\{phase="Running"\} 2$/m);
    const expiry = Number(
      /^waggle_certificate_expiry_timestamp_seconds\{identity="waggle-operator"\} (\d+)$/m.exec(text)?.[1],
    );
    expect(Math.abs(expiry - (now.getTime() + 3_600_000) / 1000)).toBeLessThan(5);
    expect(text).toMatch(/^waggle_certificate_expiry_timestamp_seconds\{identity="waggle-agent-ca"\} \d+$/m);
  });
});
