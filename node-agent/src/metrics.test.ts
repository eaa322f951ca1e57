import { createCA } from '@waggle/test';
import { describe, expect, it } from 'vitest';
import { createMetrics } from './metrics.ts';

describe('warm pool metrics', () => {
  it('reports warm VMs by pool and state as scraped, and binds with their latency', async () => {
    const m = createMetrics();
    let ready = 2;
    m.watchWarmPools(() => [
      { name: 'a/py', templateHash: 'h', replicas: 2, ready, booting: 0, outdated: 1, message: '' },
    ]);
    m.warmBinds.inc({ pool: 'a/py' });
    m.warmBindSeconds.observe(0.02);
    const first = await m.registry.metrics();
    expect(first).toContain('waggle_agent_warm_vms{pool="a/py",state="ready"} 2');
    expect(first).toContain('waggle_agent_warm_vms{pool="a/py",state="outdated"} 1');
    expect(first).toContain('waggle_agent_warm_binds_total{pool="a/py"} 1');
    expect(first).toContain('waggle_agent_warm_bind_seconds_bucket{le="0.025"} 1');
    ready = 1;
    expect(await m.registry.metrics()).toContain('waggle_agent_warm_vms{pool="a/py",state="ready"} 1');
  });
});

describe('exec and certificate metrics', () => {
  it('reports boots by origin, exec durations by outcome and the held certificates by identity', async () => {
    const ca = await createCA('waggle-agent-ca', 10);
    const m = createMetrics();
    m.execSeconds.observe({ outcome: 'timeout' }, 30);
    m.bootSeconds.observe({ origin: 'restored' }, 0.4);
    m.watchCertificates(() => [ca.certPem]);
    const text = await m.registry.metrics();
    expect(text).toContain('waggle_agent_exec_seconds_bucket{le="30",outcome="timeout"} 1');
    expect(text).toContain('waggle_agent_vm_boot_seconds_bucket{le="0.5",origin="restored"} 1');
    expect(text).toMatch(/^waggle_certificate_expiry_timestamp_seconds\{identity="waggle-agent-ca"\} \d+$/m);
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
  });
});
