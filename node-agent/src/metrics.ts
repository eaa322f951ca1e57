import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { WarmPoolStatus } from './pool/warm-pools.ts';

/** Prometheus metrics of the node-agent. */
export function createMetrics() {
  const registry = new Registry();
  let warmPools: (() => WarmPoolStatus[]) | undefined;
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
    warmVMs: new Gauge({
      name: 'waggle_agent_warm_vms',
      help: 'Unowned warm VMs by pool and state (ready, booting, outdated)',
      labelNames: ['pool', 'state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of warmPools?.() ?? []) {
          this.set({ pool: p.name, state: 'ready' }, p.ready);
          this.set({ pool: p.name, state: 'booting' }, p.booting);
          this.set({ pool: p.name, state: 'outdated' }, p.outdated);
        }
      },
    }),
    warmBinds: new Counter({
      name: 'waggle_agent_warm_binds_total',
      help: 'CreateVMs served by binding a warm VM, by pool',
      labelNames: ['pool'],
      registers: [registry],
    }),
    warmBindSeconds: new Histogram({
      name: 'waggle_agent_warm_bind_seconds',
      help: 'Time to bind a warm VM to its owner (clock and randomness fix-up included)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    /** Where waggle_agent_warm_vms reads the pools from (the agent's, once it exists). */
    watchWarmPools(source: () => WarmPoolStatus[]): void {
      warmPools = source;
    },
    rpcs: new Counter({
      name: 'waggle_agent_rpcs_total',
      help: 'RPCs by method and code',
      labelNames: ['method', 'code'],
      registers: [registry],
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
