import { describe, expect, it } from 'vitest';
import { type Allocation, type NodeView, pickNode } from './scheduler.ts';

const node = (name: string, over: Partial<NodeView> = {}): NodeView => ({
  name,
  ready: true,
  heartbeatAgeMs: 1_000,
  unschedulable: false,
  runtimes: ['python', 'node', 'shell'],
  ociImages: false,
  capacity: { vms: 4, cpus: 8, memoryMiB: 4096 },
  ...over,
});
const req = { runtime: 'python', cpus: 1, memoryMiB: 512 };
const opts = { staleAfterMs: 40_000 };
const alloc = (entries: Record<string, Allocation>) => new Map(Object.entries(entries));

describe('pickNode', () => {
  it('spreads by least allocation, deterministically', () => {
    const nodes = [node('a'), node('b')];
    expect(pickNode(req, nodes, alloc({}), opts)).toEqual({ node: 'a' });
    expect(pickNode(req, nodes, alloc({ a: { vms: 1, cpus: 1, memoryMiB: 512 } }), opts)).toEqual({
      node: 'b',
    });
  });

  it('honours spec.nodeName, and says when it does not exist', () => {
    const nodes = [node('a'), node('b')];
    expect(pickNode({ ...req, nodeName: 'b' }, nodes, alloc({}), opts)).toEqual({ node: 'b' });
    expect(pickNode({ ...req, nodeName: 'zz' }, nodes, alloc({}), opts)).toEqual({
      reason: 'spec.nodeName "zz" is not a registered WaggleNode',
    });
  });

  it('explains every rejection, most common first', () => {
    const nodes = [
      node('full1', { capacity: { vms: 1, cpus: 8, memoryMiB: 4096 } }),
      node('full2', { capacity: { vms: 1, cpus: 8, memoryMiB: 4096 } }),
      node('down', { ready: false }),
      node('stale', { heartbeatAgeMs: 60_000 }),
      node('cordoned', { unschedulable: true }),
      node('noruntime', { runtimes: ['shell'] }),
      node('nocpu', { capacity: { vms: 4, cpus: 1, memoryMiB: 4096 } }),
      node('nomem', { capacity: { vms: 4, cpus: 8, memoryMiB: 256 } }),
    ];
    const used = alloc({
      full1: { vms: 1, cpus: 1, memoryMiB: 512 },
      full2: { vms: 1, cpus: 1, memoryMiB: 512 },
      nocpu: { vms: 1, cpus: 1, memoryMiB: 512 },
    });
    expect(pickNode(req, nodes, used, opts)).toEqual({
      reason:
        '0/8 nodes are available: 2 no free VM slot, 1 not ready, 1 heartbeat is stale, 1 cordoned, ' +
        '1 no python runtime, 1 not enough free vCPUs, 1 not enough free memory',
    });
  });

  it('places an OCI image only on a node that runs them, whatever its runtimes', () => {
    const nodes = [node('a'), node('b', { ociImages: true, runtimes: ['python'] })];
    const req = { runtime: 'shell', cpus: 1, memoryMiB: 512 };
    expect(
      pickNode({ ...req, image: 'registry.example.com/t/sh:1' }, nodes, new Map(), { staleAfterMs: 30_000 }),
    ).toEqual({
      node: 'b',
    });
    expect(pickNode(req, [nodes[1] as NodeView], new Map(), { staleAfterMs: 30_000 })).toMatchObject({
      reason: expect.stringContaining('no shell runtime'),
    });
    expect(
      pickNode({ ...req, image: 'registry.example.com/t/sh:1' }, [node('a')], new Map(), {
        staleAfterMs: 30_000,
      }),
    ).toMatchObject({ reason: expect.stringContaining('runs no OCI images') });
  });
  it('says when no node is registered at all', () => {
    expect(pickNode(req, [], alloc({}), opts)).toMatchObject({
      reason: expect.stringMatching(/no WaggleNode is registered/),
    });
  });

  it('fills exactly to capacity: 20 slots take 20 of 50 requests', () => {
    const nodes = [
      node('a', { capacity: { vms: 12, cpus: 64, memoryMiB: 65536 } }),
      node('b', { capacity: { vms: 8, cpus: 64, memoryMiB: 65536 } }),
    ];
    const used = new Map<string, Allocation>();
    let placed = 0;
    for (let i = 0; i < 50; i++) {
      const r = pickNode(req, nodes, used, opts);
      if ('reason' in r) continue;
      placed++;
      const u = used.get(r.node) ?? { vms: 0, cpus: 0, memoryMiB: 0 };
      used.set(r.node, { vms: u.vms + 1, cpus: u.cpus + 1, memoryMiB: u.memoryMiB + 512 });
    }
    expect(placed).toBe(20);
    expect(used.get('a')?.vms).toBe(12);
    expect(used.get('b')?.vms).toBe(8);
  });
});
