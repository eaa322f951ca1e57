import {
  POOL_LABEL,
  PoolConditionType,
  type PoolNodeStatus,
  PoolReason,
  type WagglePool,
  type WagglePoolStatus,
} from '@waggle/crds';
import { setCondition } from '../environment/conditions.ts';
import { statusDiffers } from '../runtime/status-diff.ts';
import { templateHash } from './template.ts';

/** What the operator knows of one pool: its assignment and what the nodes report. */
export interface PoolObservation {
  /** node → warm VMs the operator asked it to keep. */
  assigned: ReadonlyMap<string, number>;
  /** Replicas that fit on no node. */
  unplaced: number;
  /** node → what it reports (WaggleNode status.pools), from nodes that heartbeat. */
  reported: ReadonlyMap<string, { ready: number; booting: number }>;
}

/**
 * The status a pool should have: counts summed over the nodes' reports, the per-node view, the
 * template's hash, the scale selector and a Ready condition. A pure function (the clock only sets
 * a condition's transition time).
 */
export function poolStatus(pool: WagglePool, o: PoolObservation, now: Date): WagglePoolStatus {
  const names = [...new Set([...o.assigned.keys(), ...o.reported.keys()])].sort();
  const nodes: PoolNodeStatus[] = names.map((name) => ({
    name,
    replicas: o.assigned.get(name) ?? 0,
    ready: o.reported.get(name)?.ready ?? 0,
    booting: o.reported.get(name)?.booting ?? 0,
  }));
  const readyReplicas = nodes.reduce((a, n) => a + n.ready, 0);
  const bootingReplicas = nodes.reduce((a, n) => a + n.booting, 0);
  const desired = pool.spec.replicas;
  const placed = desired - o.unplaced;
  const ready =
    readyReplicas >= desired
      ? { status: 'True' as const, reason: PoolReason.Filled, message: `${readyReplicas} warm VMs ready` }
      : o.unplaced > 0
        ? {
            status: 'False' as const,
            reason: PoolReason.InsufficientCapacity,
            message: `only ${placed} of ${desired} warm VMs fit on the Ready nodes (room, runtime); ${readyReplicas} ready`,
          }
        : {
            status: 'False' as const,
            reason: PoolReason.Filling,
            message: `${readyReplicas} of ${desired} warm VMs ready, ${bootingReplicas} booting`,
          };
  return {
    replicas: readyReplicas + bootingReplicas,
    readyReplicas,
    bootingReplicas,
    nodes,
    templateHash: templateHash(pool.spec.template),
    selector: `${POOL_LABEL}=${pool.metadata.name}`,
    observedGeneration: pool.metadata.generation ?? 0,
    conditions: setCondition(pool.status?.conditions, { type: PoolConditionType.Ready, ...ready }, now),
  };
}

/** True when writing `next` would change the stored status. */
export function statusChanged(pool: WagglePool, next: WagglePoolStatus): boolean {
  return statusDiffers(pool.status, next);
}
