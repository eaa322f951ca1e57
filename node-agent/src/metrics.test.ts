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
