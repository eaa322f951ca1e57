import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of the operator. Gauges are filled from callbacks at scrape time. */
export function createOperatorMetrics(collect: {
  queueDepth: () => number;
  phases: () => Record<string, number>;
  isLeader: () => boolean;
}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'waggle_operator_' });
  const reconcileSeconds = new Histogram({
    name: 'waggle_operator_reconcile_duration_seconds',
    help: 'Duration of WaggleEnvironment reconciles by outcome',
    labelNames: ['outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const schedulingFailures = new Counter({
    name: 'waggle_operator_scheduling_failures_total',
    help: 'Scheduling attempts that found no node',
    registers: [registry],
  });
  const orphanVMsDestroyed = new Counter({
    name: 'waggle_operator_orphaned_vms_destroyed_total',
    help: 'VMs destroyed because their WaggleEnvironment no longer exists',
    registers: [registry],
  });
  const agentCertificatesRenewed = new Counter({
    name: 'waggle_operator_agent_certificates_renewed_total',
    help: 'Node-agent mTLS certificates reissued, by Secret',
    labelNames: ['secret'],
    registers: [registry],
  });
  new Gauge({
    name: 'waggle_operator_queue_depth',
    help: 'Keys waiting in the work queue',
    registers: [registry],
    collect() {
      this.set(collect.queueDepth());
    },
  });
  new Gauge({
    name: 'waggle_operator_environments',
    help: 'WaggleEnvironments by phase',
    labelNames: ['phase'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [phase, n] of Object.entries(collect.phases())) this.set({ phase }, n);
    },
  });
  new Gauge({
    name: 'waggle_operator_leader',
    help: '1 when this replica is the leader',
    registers: [registry],
    collect() {
      this.set(collect.isLeader() ? 1 : 0);
    },
  });
  return { registry, reconcileSeconds, schedulingFailures, orphanVMsDestroyed, agentCertificatesRenewed };
}
export type OperatorMetrics = ReturnType<typeof createOperatorMetrics>;
