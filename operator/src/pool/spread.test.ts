import { describe, expect, it } from 'vitest';
import type { Allocation, NodeView } from '../environment/scheduler.ts';
import { type PoolDemand, spreadPools } from './spread.ts';

const node = (name: string, vms = 10, runtimes = ['python', 'node', 'shell']): NodeView => ({
  name,
  ready: true,
  heartbeatAgeMs: 0,
  unschedulable: false,
  ociImages: false,
  runtimes,
  capacity: { vms, cpus: 64, memoryMiB: 65_536 },
});
const pool = (ref: string, replicas: number, extra: Partial<PoolDemand> = {}): PoolDemand => ({
  ref,
  replicas,
  runtime: 'python',
  cpus: 1,
  memoryMiB: 512,
  ...extra,
});
/** node → pool → count, as plain objects for readable expectations. */
const plain = (s: ReturnType<typeof spreadPools>) =>
  Object.fromEntries([...s.byNode].map(([n, m]) => [n, Object.fromEntries(m)]));

describe('spreadPools', () => {
  it('spreads a pool evenly over the nodes (the remainder to the first by name)', () => {
    const s = spreadPools([pool('ns/p', 5)], [node('c'), node('a'), node('b')], new Map());
    expect(plain(s)).toEqual({ a: { 'ns/p': 2 }, b: { 'ns/p': 2 }, c: { 'ns/p': 1 } });
    expect(s.unplaced.size).toBe(0);
  });

  it('counts room left after the environments, and says how many fit nowhere', () => {
    const used = new Map<string, Allocation>([['a', { vms: 9, cpus: 9, memoryMiB: 4608 }]]);
    const s = spreadPools([pool('ns/p', 6)], [node('a'), node('b', 3)], used);
    expect(plain(s)).toEqual({ a: { 'ns/p': 1 }, b: { 'ns/p': 3 } });
    expect(s.unplaced.get('ns/p')).toBe(2);
  });

  it('respects vCPUs and memory, not only VM slots', () => {
    const small: NodeView = { ...node('a'), capacity: { vms: 10, cpus: 4, memoryMiB: 2048 } };
    const s = spreadPools([pool('ns/p', 5, { cpus: 2, memoryMiB: 512 })], [small], new Map());
    expect(plain(s)).toEqual({ a: { 'ns/p': 2 } });
    expect(s.unplaced.get('ns/p')).toBe(3);
  });

  it('places a pool only on nodes offering its runtime', () => {
    const s = spreadPools(
      [pool('ns/n', 2, { runtime: 'node' })],
      [node('a', 10, ['python']), node('b')],
      new Map(),
    );
    expect(plain(s)).toEqual({ b: { 'ns/n': 2 } });
  });

  it('places a pool of an OCI image only on nodes that run images, whatever their built-in runtimes', () => {
    const images = { ...node('images', 10, []), ociImages: true };
    const s = spreadPools([pool('ns/ds', 3, { image: true })], [node('builtin'), images], new Map());
    expect(plain(s)).toEqual({ images: { 'ns/ds': 3 } });
    const none = spreadPools([pool('ns/ds', 1, { image: true })], [node('builtin')], new Map());
    expect(none.unplaced.get('ns/ds')).toBe(1);
  });

  it('lets pools take turns when room is short (a big pool cannot starve a small one)', () => {
    const s = spreadPools([pool('ns/big', 10), pool('ns/small', 2)], [node('a', 4)], new Map());
    expect(plain(s)).toEqual({ a: { 'ns/big': 2, 'ns/small': 2 } });
    expect(s.unplaced.get('ns/big')).toBe(8);
  });

  it('puts a second pool on the nodes with fewer warm VMs', () => {
    const s = spreadPools([pool('ns/a', 1), pool('ns/b', 1)], [node('x'), node('y')], new Map());
    expect(plain(s)).toEqual({ x: { 'ns/a': 1 }, y: { 'ns/b': 1 } });
  });

  it('is deterministic and empty for no replicas or no nodes', () => {
    const args = [[pool('ns/p', 3), pool('ns/q', 2)], [node('b'), node('a')], new Map()] as const;
    expect(plain(spreadPools(...args))).toEqual(plain(spreadPools(...args)));
    expect(plain(spreadPools([pool('ns/p', 0)], [node('a')], new Map()))).toEqual({});
    expect(spreadPools([pool('ns/p', 2)], [], new Map()).unplaced.get('ns/p')).toBe(2);
  });
});
