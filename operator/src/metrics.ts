import { certificateExpiries } from '@waggle/node-agent/client';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { RuntimeMetrics } from './runtime/metrics.ts';

/** What the operator's gauges read at scrape time. */
export interface OperatorMetricSources {
  /** Environments in the cache by status.phase. */
  phases: () => Record<string, number>;
  isLeader: () => boolean;
  /** The Lease (leader_election_master_status's `name`). */
  leaseName: string;
  /** PEM certificates the operator holds (its client identity and the CA it trusts). */
  certificates: () => string[];
}

// controller-runtime's buckets for reconcile time; client-go's for queue waits (1 µs … 10 s, ×10).
const RECONCILE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5,
  1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];
const QUEUE_BUCKETS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10];
/** Cold boots take seconds under TCG; warm binds and snapshot restores tens of milliseconds. */
export const CREATE_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300];

/**
 * The operator's Prometheus metrics: controller-runtime's names for what means the same thing
 * (reconciles per controller, work queues, leader election), `waggle_` for Waggle's own, and the
 * standard process/Node.js metrics. docs/metrics.md lists them all.
 */
export function createOperatorMetrics(src: OperatorMetricSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const reconcileTotal = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Total number of reconciliations per controller',
    labelNames: ['controller', 'result'],
    registers,
  });
  const reconcileErrors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Total number of reconciliation errors per controller',
    labelNames: ['controller'],
    registers,
  });
  const terminalErrors = new Counter({
    name: 'controller_runtime_terminal_reconcile_errors_total',
    help: 'Total number of terminal reconciliation errors (not retried) per controller',
    labelNames: ['controller'],
    registers,
  });
  const reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Length of time per reconciliation per controller',
    labelNames: ['controller'],
    buckets: RECONCILE_BUCKETS,
    registers,
  });
  const depth = new Gauge({
    name: 'workqueue_depth',
    help: 'Current depth of workqueue',
    labelNames: ['name'],
    registers,
  });
  const adds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Total number of adds handled by workqueue',
    labelNames: ['name'],
    registers,
  });
  const queueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested',
    labelNames: ['name'],
    buckets: QUEUE_BUCKETS,
    registers,
  });
  const workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long in seconds processing an item from workqueue takes',
    labelNames: ['name'],
    buckets: QUEUE_BUCKETS,
    registers,
  });
  const retries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Total number of retries handled by workqueue',
    labelNames: ['name'],
    registers,
  });
  const runtime: RuntimeMetrics = {
    reconciled(controller, result, seconds, terminal) {
      reconcileTotal.inc({ controller, result });
      reconcileTime.observe({ controller }, seconds);
      if (result === 'error') reconcileErrors.inc({ controller });
      if (terminal) terminalErrors.inc({ controller });
    },
    queue(name) {
      // A new leader term makes a new queue: it starts empty.
      depth.set({ name }, 0);
      return {
        added: () => adds.inc({ name }),
        depth: (n) => depth.set({ name }, n),
        queued: (s) => queueDuration.observe({ name }, s),
        worked: (s) => workDuration.observe({ name }, s),
        retried: () => retries.inc({ name }),
      };
    },
  };

  new Gauge({
    name: 'leader_election_master_status',
    help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master',
    labelNames: ['name'],
    registers,
    collect() {
      this.set({ name: src.leaseName }, src.isLeader() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'waggle_environments',
    help: 'WaggleEnvironments by status.phase ("None" before the first status)',
    labelNames: ['phase'],
    registers,
    collect() {
      this.reset();
      for (const [phase, n] of Object.entries(src.phases())) this.set({ phase }, n);
    },
  });
  const createSeconds = new Histogram({
    name: 'waggle_environment_create_seconds',
    help: 'From the leader first seeing a WaggleEnvironment to its guest being ready, by how the VM was made (status.createdFrom: cold, restored, warm)',
    labelNames: ['path'],
    buckets: CREATE_BUCKETS,
    registers,
  });
  const schedulingFailures = new Counter({
    name: 'waggle_scheduling_failures_total',
    help: 'Scheduling attempts that found no node for an environment',
    registers,
  });
  const orphanVMsDestroyed = new Counter({
    name: 'waggle_orphan_vms_destroyed_total',
    help: 'VMs destroyed because their WaggleEnvironment no longer exists',
    registers,
  });
  const certificatesRenewed = new Counter({
    name: 'waggle_certificates_renewed_total',
    help: 'mTLS certificates the leader reissued, by Secret',
    labelNames: ['secret'],
    registers,
  });
  new Gauge({
    name: 'waggle_certificate_expiry_timestamp_seconds',
    help: 'When each mTLS certificate this process holds expires (Unix time), by identity (the CN)',
    labelNames: ['identity'],
    registers,
    collect() {
      this.reset();
      for (const [identity, at] of certificateExpiries(src.certificates())) this.set({ identity }, at);
    },
  });
  return { registry, runtime, createSeconds, schedulingFailures, orphanVMsDestroyed, certificatesRenewed };
}
export type OperatorMetrics = ReturnType<typeof createOperatorMetrics>;
