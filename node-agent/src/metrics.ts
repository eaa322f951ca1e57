import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { certificateExpiries } from './pki/certificate-expiry.ts';
import type { WarmPoolStatus } from './pool/warm-pools.ts';

/** KVM boots in well under a second, TCG in seconds; the boot timeout (default 2 m) caps it. */
const BOOT_BUCKETS = [0.25, 0.5, 1, 2, 4, 6, 8, 12, 20, 40, 60, 90, 120];
/** Exec timeouts default to 30 s and reach 5 m. */
const EXEC_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Prometheus metrics of the node-agent (served on the ops listener; docs/metrics.md). */
export function createMetrics() {
  const registry = new Registry();
  let warmPools: (() => WarmPoolStatus[]) | undefined;
  let certificates: (() => string[]) | undefined;
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    vms: new Gauge({ name: 'waggle_agent_vms', help: 'VMs on this node', registers: [registry] }),
    bootSeconds: new Histogram({
      name: 'waggle_agent_vm_boot_seconds',
      help: 'CreateVM setup to guest ready, per VM a CreateVM made, by origin (cold: booted, restored: from a template snapshot)',
      labelNames: ['origin'],
      buckets: BOOT_BUCKETS,
      registers: [registry],
    }),
    execSeconds: new Histogram({
      name: 'waggle_agent_exec_seconds',
      help: 'Exec RPCs from start to the guest process exit, by outcome (ok, timeout, cancelled, error)',
      labelNames: ['outcome'],
      buckets: EXEC_BUCKETS,
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
    certificateExpiry: new Gauge({
      name: 'waggle_certificate_expiry_timestamp_seconds',
      help: 'When each mTLS certificate this process holds expires (Unix time), by identity (the CN)',
      labelNames: ['identity'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [identity, at] of certificateExpiries(certificates?.() ?? [])) this.set({ identity }, at);
      },
    }),
    /** Where waggle_agent_warm_vms reads the pools from (the agent's, once it exists). */
    watchWarmPools(source: () => WarmPoolStatus[]): void {
      warmPools = source;
    },
    /** Where the certificate expiry gauge reads the PEMs held (serving certificate, client CA). */
    watchCertificates(source: () => string[]): void {
      certificates = source;
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
