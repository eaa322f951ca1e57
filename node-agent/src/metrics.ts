import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of the node-agent. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'waggle_agent_' });
  return {
    registry,
    vms: new Gauge({ name: 'waggle_agent_vms', help: 'VMs on this node', registers: [registry] }),
    bootSeconds: new Histogram({
      name: 'waggle_agent_vm_boot_seconds',
      help: 'CreateVM to guest ready',
      buckets: [1, 2, 4, 6, 8, 12, 20, 40, 90],
      registers: [registry],
    }),
    rpcs: new Counter({
      name: 'waggle_agent_rpcs_total',
      help: 'RPCs by method and code',
      labelNames: ['method', 'code'],
      registers: [registry],
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
