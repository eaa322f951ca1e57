import type { WaggleNode } from '@waggle/crds';
import { describe, expect, it } from 'vitest';
import { schedulingSignature } from './operator.ts';

const node = (status: Record<string, unknown>, spec: Record<string, unknown> = {}) =>
  ({ metadata: { name: 'n' }, spec, status }) as unknown as WaggleNode;

const base = {
  endpoint: 'https://10.0.0.1:7443',
  capacity: { vms: 8, cpus: 8, memoryMiB: 8192 },
  runtimes: ['python'],
  lastHeartbeatTime: '2026-12-01T10:00:00Z',
  conditions: [
    { type: 'Ready', status: 'True', reason: 'AgentReady', lastTransitionTime: '2026-12-01T09:00:00Z' },
  ],
};

describe('schedulingSignature', () => {
  it('ignores a heartbeat (time and allocation) but sees every change a decision depends on', () => {
    const sig = schedulingSignature(node(base));
    expect(
      schedulingSignature(
        node({ ...base, lastHeartbeatTime: '2026-12-01T10:00:10Z', allocated: { vms: 3 } }),
      ),
    ).toBe(sig);
    const changed = [
      node({ ...base, conditions: [{ ...base.conditions[0], status: 'False' }] }),
      node({ ...base, endpoint: 'https://10.0.0.2:7443' }),
      node({ ...base, capacity: { ...base.capacity, vms: 4 } }),
      node({ ...base, runtimes: ['python', 'node'] }),
      node(base, { unschedulable: true }),
    ];
    for (const n of changed) expect(schedulingSignature(n)).not.toBe(sig);
  });
});
