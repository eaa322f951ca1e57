import { randomUUID } from 'node:crypto';
import type { WaggleNode } from '@waggle/crds';
import type { NodeAgentClient } from '@waggle/node-agent/client';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { OrphanVMCollector, type OrphanVMCollectorOptions } from './orphan-vms.ts';

const NOW = Date.parse('2026-11-24T12:00:00Z');
const minutesAgo = (m: number) => new Date(NOW - m * 60_000).toISOString();

const node = (name: string, ready: 'True' | 'False' = 'True'): WaggleNode =>
  ({
    apiVersion: 'waggle.dev/v1alpha1',
    kind: 'WaggleNode',
    metadata: { name },
    status: {
      endpoint: `http://${name}:9000`,
      conditions: [{ type: 'Ready', status: ready, reason: 'x', message: '', lastTransitionTime: '' }],
    },
  }) as unknown as WaggleNode;

/** In-memory node-agents by endpoint: vmId → createdAt. */
function agents(byEndpoint: Record<string, Record<string, string>>, failing = new Set<string>()) {
  const destroyed: string[] = [];
  const agentFor = (endpoint: string) =>
    ({
      async listVMs() {
        if (failing.has(endpoint)) throw new Error('connection refused');
        return {
          vms: Object.entries(byEndpoint[endpoint] ?? {}).map(([vmId, createdAt]) => ({
            spec: { vmId },
            createdAt,
          })),
        };
      },
      async destroyVM({ vmId }: { vmId: string }) {
        const vms = byEndpoint[endpoint] ?? {};
        const existed = vmId in vms;
        delete vms[vmId];
        if (existed) destroyed.push(vmId);
        return { existed };
      },
    }) as unknown as NodeAgentClient;
  return { agentFor, destroyed };
}

function collector(o: Partial<OrphanVMCollectorOptions> & Pick<OrphanVMCollectorOptions, 'agentFor'>) {
  return new OrphanVMCollector({
    listNodes: () => [node('a')],
    cachedPlacements: () => new Map(),
    livePlacements: async () => new Map(),
    graceMs: 120_000,
    log: pino({ level: 'silent' }),
    now: () => NOW,
    ...o,
  });
}

describe('OrphanVMCollector', () => {
  it('destroys an old VM whose environment is gone and keeps every other VM', async () => {
    const [orphan, cached, liveOnly, young] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const a = agents({
      'http://a:9000': {
        [orphan]: minutesAgo(10),
        [cached]: minutesAgo(10),
        [liveOnly]: minutesAgo(10),
        [young]: minutesAgo(1),
        'bench-1': minutesAgo(10), // not a Kubernetes UID: not the operator's VM
      },
    });
    const seen: string[] = [];
    const c = collector({
      agentFor: a.agentFor,
      cachedPlacements: () => new Map([[cached, 'a']]),
      // The cache lags: liveOnly was just created.
      livePlacements: async () =>
        new Map<string, string | undefined>([
          [cached, 'a'],
          [liveOnly, undefined],
        ]),
      onCollected: (n, vmId, why) => seen.push(`${n.metadata.name}/${vmId}: ${why}`),
    });
    expect(await c.collect()).toEqual([orphan]);
    expect(a.destroyed).toEqual([orphan]);
    expect(seen).toEqual([`a/${orphan}: no WaggleEnvironment has this UID any more`]);
  });

  it('does not ask the apiserver when the cache accounts for every VM', async () => {
    const uid = randomUUID();
    const a = agents({ 'http://a:9000': { [uid]: minutesAgo(10) } });
    let asked = 0;
    const c = collector({
      agentFor: a.agentFor,
      cachedPlacements: () => new Map([[uid, 'a']]),
      livePlacements: async () => {
        asked++;
        return new Map();
      },
    });
    expect(await c.collect()).toEqual([]);
    expect(asked).toBe(0);
  });

  it('skips nodes that are not Ready and survives an unreachable agent', async () => {
    const [onLost, onDown, onB] = [randomUUID(), randomUUID(), randomUUID()];
    const a = agents(
      {
        'http://lost:9000': { [onLost]: minutesAgo(10) },
        'http://down:9000': { [onDown]: minutesAgo(10) },
        'http://b:9000': { [onB]: minutesAgo(10) },
      },
      new Set(['http://down:9000']),
    );
    const c = collector({
      agentFor: a.agentFor,
      listNodes: () => [node('lost', 'False'), node('down'), node('b')],
    });
    expect(await c.collect()).toEqual([onB]);
  });

  it('treats a VM without a creation time as old, and counts only VMs that still existed', async () => {
    const [noTime, raced] = [randomUUID(), randomUUID()];
    const vms: Record<string, string> = { [noTime]: '', [raced]: minutesAgo(10) };
    const a = agents({ 'http://a:9000': vms });
    const c = collector({
      agentFor: a.agentFor,
      livePlacements: async () => {
        delete vms[raced]; // its finalizer destroyed it meanwhile
        return new Map();
      },
    });
    expect(await c.collect()).toEqual([noTime]);
  });

  it('destroys a VM whose environment runs on another node, never one whose environment is not placed yet', async () => {
    // Left by a warm bind whose Running write never happened: placed again, on b.
    const [elsewhere, unplaced, staleCache] = [randomUUID(), randomUUID(), randomUUID()];
    const a = agents({
      'http://a:9000': {
        [elsewhere]: minutesAgo(10),
        [unplaced]: minutesAgo(10),
        [staleCache]: minutesAgo(10),
      },
    });
    const seen: string[] = [];
    const c = collector({
      agentFor: a.agentFor,
      cachedPlacements: () =>
        new Map<string, string | undefined>([
          [elsewhere, 'b'],
          [unplaced, undefined],
          [staleCache, 'b'], // the cache says b, the apiserver says a: kept
        ]),
      livePlacements: async () =>
        new Map<string, string | undefined>([
          [elsewhere, 'b'],
          [unplaced, undefined],
          [staleCache, 'a'],
        ]),
      onCollected: (_n, vmId, why) => seen.push(`${vmId}: ${why}`),
    });
    expect(await c.collect()).toEqual([elsewhere]);
    expect(seen).toEqual([`${elsewhere}: its WaggleEnvironment runs on node b`]);
  });
});
