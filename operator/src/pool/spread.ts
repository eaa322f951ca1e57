import type { WaggleEnvironment } from '@waggle/crds';
import type { Allocation, NodeView } from '../environment/scheduler.ts';

/** What the spread needs of a pool: its name ("<ns>/<name>"), size and the size of one VM. */
export interface PoolDemand {
  ref: string;
  replicas: number;
  runtime: string;
  /** The pool's VMs run an OCI image: only nodes that run images may hold them. */
  image?: boolean;
  cpus: number;
  memoryMiB: number;
}

export interface Spread {
  /** node → pool ref → warm VMs that node should keep (nodes with none are absent). */
  byNode: Map<string, Map<string, number>>;
  /** pool ref → replicas that fit nowhere (absent when all fit). */
  unplaced: Map<string, number>;
}

const EMPTY: Allocation = { vms: 0, cpus: 0, memoryMiB: 0 };

/** What the environments on each node use (Failed ones hold nothing, as in scheduling). */
export function environmentAllocations(envs: readonly WaggleEnvironment[]): Map<string, Allocation> {
  const out = new Map<string, Allocation>();
  for (const e of envs) {
    const node = e.status?.nodeName;
    if (!node || e.status?.phase === 'Failed') continue;
    const a = out.get(node) ?? EMPTY;
    out.set(node, {
      vms: a.vms + 1,
      cpus: a.cpus + e.spec.resources.cpus,
      memoryMiB: a.memoryMiB + e.spec.resources.memoryMiB,
    });
  }
  return out;
}

/**
 * Spreads every pool's replicas over `nodes` (already filtered to Ready, fresh, uncordoned ones):
 * one replica at a time, pools taking turns (a big pool cannot starve a small one), each to the
 * node offering the runtime with room left after its environments and the warm VMs already
 * placed there, with the fewest VMs of that pool (an even spread), then the fewest warm VMs, then
 * by name. A pure function of its inputs: the same cluster gives the same assignment.
 */
export function spreadPools(
  pools: readonly PoolDemand[],
  nodes: readonly NodeView[],
  allocated: ReadonlyMap<string, Allocation>,
): Spread {
  const free = new Map<string, Allocation>();
  for (const n of nodes) {
    const used = allocated.get(n.name) ?? EMPTY;
    free.set(n.name, {
      vms: n.capacity.vms - used.vms,
      cpus: n.capacity.cpus - used.cpus,
      memoryMiB: n.capacity.memoryMiB - used.memoryMiB,
    });
  }
  const byNode = new Map<string, Map<string, number>>();
  const unplaced = new Map<string, number>();
  const warmOn = (node: string) => [...(byNode.get(node)?.values() ?? [])].reduce((a, b) => a + b, 0);
  const ofPool = (node: string, ref: string) => byNode.get(node)?.get(ref) ?? 0;
  const sorted = [...nodes].sort((a, b) => a.name.localeCompare(b.name));
  const remaining = new Map(
    [...pools].sort((a, b) => a.ref.localeCompare(b.ref)).map((p) => [p, p.replicas] as const),
  );

  let placedAny = true;
  while (placedAny) {
    placedAny = false;
    for (const [pool, left] of remaining) {
      if (left <= 0) continue;
      let best: NodeView | undefined;
      for (const n of sorted) {
        const f = free.get(n.name) as Allocation;
        if (pool.image ? !n.ociImages : !n.runtimes.includes(pool.runtime)) continue;
        if (f.vms < 1 || f.cpus < pool.cpus || f.memoryMiB < pool.memoryMiB) continue;
        if (
          !best ||
          ofPool(n.name, pool.ref) < ofPool(best.name, pool.ref) ||
          (ofPool(n.name, pool.ref) === ofPool(best.name, pool.ref) && warmOn(n.name) < warmOn(best.name))
        )
          best = n;
      }
      if (!best) {
        remaining.set(pool, 0);
        unplaced.set(pool.ref, left);
        continue;
      }
      const f = free.get(best.name) as Allocation;
      free.set(best.name, {
        vms: f.vms - 1,
        cpus: f.cpus - pool.cpus,
        memoryMiB: f.memoryMiB - pool.memoryMiB,
      });
      const share = byNode.get(best.name) ?? new Map<string, number>();
      share.set(pool.ref, (share.get(pool.ref) ?? 0) + 1);
      byNode.set(best.name, share);
      remaining.set(pool, left - 1);
      placedAny = true;
    }
  }
  return { byNode, unplaced };
}
