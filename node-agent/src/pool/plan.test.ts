import { describe, expect, it } from 'vitest';
import { type DeclaredPool, type NodeState, pickEvictions, planRefill, usage } from './plan.ts';
import type { VMTemplate } from './pool-spec.ts';
import type { WarmVmView } from './warm-host.ts';

const t: VMTemplate = {
  runtime: 'python',
  cpus: 1,
  memoryMiB: 256,
  diskMiB: 1024,
  egress: 'all',
  allowDomains: [],
};
const declared = (name: string, replicas: number, hash = 'h1'): DeclaredPool => ({
  name,
  replicas,
  template: t,
  hash,
});
let seq = 0;
const vm = (v: Partial<WarmVmView>): WarmVmView => ({
  instanceId: `i-${++seq}`,
  state: 'running',
  cpus: 1,
  memoryMiB: 256,
  createdAt: `2026-01-01T00:00:${String(seq).padStart(2, '0')}Z`,
  ...v,
});
const warm = (pool: string, hash = 'h1', extra: Partial<WarmVmView> = {}) =>
  vm({ pool, templateHash: hash, ...extra });
const state = (s: Partial<NodeState>): NodeState => ({
  pools: [],
  vms: [],
  claimed: new Set(),
  inFlight: [],
  reservations: [],
  capacity: { vms: 4, cpus: 4, memoryMiB: 4096 },
  ...s,
});

describe('usage', () => {
  it('counts holding VMs, in-flight boots not listed yet, and reservations not listed yet', () => {
    const vms = [
      vm({ vmId: 'env-1' }),
      vm({ state: 'exited', vmId: 'env-2' }),
      warm('a/p', 'h1', { state: 'booting' }),
    ];
    const boot = { pool: 'a/p', hash: 'h1', cpus: 1, memoryMiB: 256 };
    expect(
      usage({
        vms,
        inFlight: [boot, { ...boot }],
        reservations: [
          { vmId: 'env-1', cpus: 1, memoryMiB: 256 },
          { vmId: 'env-3', cpus: 2, memoryMiB: 512 },
        ],
      }),
    ).toEqual({ vms: 4, cpus: 5, memoryMiB: 1280 });
  });
});

describe('planRefill', () => {
  const plan = (s: Partial<NodeState>, extra: { drain?: boolean; bootSlots?: number } = {}) => {
    const p = planRefill({
      ...state(s),
      drain: extra.drain ?? true,
      bootSlots: extra.bootSlots ?? 1,
      backoff: new Map(),
    });
    return { destroy: p.destroy.map((d) => `${d.reason}:${d.pool}`), boot: p.boot.map((b) => b.name) };
  };
  it.each([
    { case: 'empty pool boots one', s: { pools: [declared('a/p', 2)] }, destroy: [], boot: ['a/p'] },
    {
      case: 'full pool does nothing',
      s: { pools: [declared('a/p', 1)], vms: [warm('a/p')] },
      destroy: [],
      boot: [],
    },
    {
      case: 'the pool furthest below goes first',
      s: { pools: [declared('a/p', 2), declared('a/q', 3)], vms: [warm('a/p')] },
      destroy: [],
      boot: ['a/q'],
    },
    {
      case: 'a boot in flight takes the slot',
      s: { pools: [declared('a/p', 3)], inFlight: [{ pool: 'a/p', hash: 'h1', cpus: 1, memoryMiB: 256 }] },
      bootSlots: 0,
      destroy: [],
      boot: [],
    },
    {
      case: 'surplus is trimmed',
      s: { pools: [declared('a/p', 1)], vms: [warm('a/p'), warm('a/p')] },
      destroy: ['surplus:a/p'],
      boot: [],
    },
    {
      case: 'outdated VMs stay until new ones are ready',
      s: { pools: [declared('a/p', 2, 'h2')], vms: [warm('a/p', 'h1'), warm('a/p', 'h1')] },
      destroy: [],
      boot: ['a/p'],
    },
    {
      case: 'one new ready VM replaces one outdated VM',
      s: {
        pools: [declared('a/p', 2, 'h2')],
        vms: [warm('a/p', 'h1'), warm('a/p', 'h1'), warm('a/p', 'h2')],
      },
      destroy: ['outdated:a/p'],
      boot: ['a/p'],
    },
    {
      case: 'dead warm VMs go, undeclared pools drain, owned VMs stay',
      s: {
        vms: [warm('a/p', 'h1', { state: 'exited' }), warm('a/gone'), vm({ vmId: 'env', pool: 'a/gone' })],
      },
      destroy: ['exited:a/p', 'drained:a/gone'],
      boot: [],
    },
    {
      case: 'before the set is known nothing drains',
      s: { vms: [warm('a/gone')] },
      drain: false,
      destroy: [],
      boot: [],
    },
    {
      case: 'a full node boots nothing',
      s: { pools: [declared('a/p', 2)], vms: [vm({ vmId: 'e1', cpus: 4 })] },
      destroy: [],
      boot: [],
    },
    {
      case: 'a full node replaces outdated VMs in place',
      s: {
        pools: [declared('a/p', 2, 'h2')],
        vms: [warm('a/p', 'h1'), warm('a/p', 'h1')],
        capacity: { vms: 2, cpus: 4, memoryMiB: 4096 },
      },
      destroy: ['outdated:a/p'],
      boot: ['a/p'],
    },
  ])('$case', ({ s, drain, bootSlots, destroy, boot }) => {
    expect(
      plan(s, {
        ...(drain !== undefined ? { drain } : {}),
        ...(bootSlots !== undefined ? { bootSlots } : {}),
      }),
    ).toEqual({ destroy, boot });
  });
});

describe('pickEvictions', () => {
  const need = { cpus: 1, memoryMiB: 256 };
  it.each([
    {
      case: 'nothing when it fits',
      vms: [warm('a/p')],
      pools: [declared('a/p', 1)],
      want: [] as string[],
      cap: { vms: 2, cpus: 8, memoryMiB: 8192 },
    },
    {
      case: 'the pool with the most surplus, outdated first',
      vms: [warm('a/p'), warm('a/q'), warm('a/q', 'h0'), warm('a/q')],
      pools: [declared('a/p', 1), declared('a/q', 1)],
      want: ['a/q:h0'],
    },
    {
      case: 'undeclared pools before declared ones, then the oldest',
      vms: [warm('a/p'), warm('a/p'), warm('a/gone'), vm({ vmId: 'e' })],
      pools: [declared('a/p', 2)],
      want: ['a/gone:h1'],
    },
    {
      case: 'nothing when evicting every warm VM would not make room',
      vms: [warm('a/p'), vm({ vmId: 'e', cpus: 3 })],
      pools: [declared('a/p', 1)],
      want: [],
      cap: { vms: 4, cpus: 3, memoryMiB: 4096 },
    },
    {
      case: 'several when one is not enough',
      vms: [warm('a/p'), warm('a/p'), vm({ vmId: 'e', cpus: 2 })],
      pools: [declared('a/p', 2)],
      want: ['a/p:h1', 'a/p:h1'],
      cap: { vms: 4, cpus: 3, memoryMiB: 4096 },
    },
  ])('$case', ({ vms, pools, want, cap }) => {
    const full = state({ vms, pools, capacity: cap ?? { vms: vms.length, cpus: 8, memoryMiB: 8192 } });
    expect(pickEvictions(full, need).map((v) => `${v.pool}:${v.templateHash}`)).toEqual(want);
  });

  it('never picks a claimed (binding) or booting warm VM', () => {
    const a = warm('a/p');
    const s = state({
      vms: [a, warm('a/p', 'h1', { state: 'booting' })],
      capacity: { vms: 2, cpus: 8, memoryMiB: 8192 },
    });
    expect(pickEvictions({ ...s, claimed: new Set([a.instanceId]) }, need)).toEqual([]);
  });
});
