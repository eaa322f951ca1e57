import { NodeConditionType, type WaggleEnvironment, type WaggleNode } from '@waggle/crds';
import { getCondition } from './conditions.ts';
import { type Allocation, type NodeView, pickNode, type ScheduleResult } from './scheduler.ts';

/** How long a written node assignment counts before the informer must have confirmed it. */
export const ASSUME_TTL_MS = 5_000;

export const keyOf = (e: WaggleEnvironment) => `${e.metadata.namespace}/${e.metadata.name}`;

export interface NodeHealthDeps {
  getNode: (name: string) => WaggleNode | undefined;
  /** How long a node's heartbeat has not changed, by the operator's clock (HeartbeatTracker). */
  nodeSilentForMs: (name: string) => number;
  /** A node silent for longer is unreachable. */
  nodeStaleAfterMs: number;
}

/** The operator's view of a node's health, from its WaggleNode and the observed heartbeats. */
export class NodeHealth {
  readonly #d: NodeHealthDeps;

  constructor(deps: NodeHealthDeps) {
    this.#d = deps;
  }

  view(n: WaggleNode): NodeView {
    const name = n.metadata.name as string;
    return {
      name,
      ready: getCondition(n.status?.conditions, NodeConditionType.Ready)?.status === 'True',
      heartbeatAgeMs: this.#d.nodeSilentForMs(name),
      unschedulable: n.spec?.unschedulable ?? false,
      runtimes: n.status?.runtimes ?? [],
      capacity: n.status?.capacity ?? { vms: 0, cpus: 0, memoryMiB: 0 },
    };
  }

  /** True when the node can be trusted to run VMs: registered, Ready, heartbeat fresh. */
  alive(name: string): boolean {
    const n = this.#d.getNode(name);
    if (!n) return false;
    const v = this.view(n);
    return v.ready && v.heartbeatAgeMs <= this.#d.nodeStaleAfterMs;
  }

  /** How long past the stale window the node has been silent (0: it heartbeats). */
  unreachableForMs(name: string): number {
    return Math.max(0, this.#d.nodeSilentForMs(name) - this.#d.nodeStaleAfterMs);
  }

  /** The node-agent endpoint of a registered node. */
  endpoint(name: string): string | undefined {
    return this.#d.getNode(name)?.status?.endpoint;
  }
}

export interface PlacementDeps {
  listEnvs: () => readonly WaggleEnvironment[];
  listNodes: () => readonly WaggleNode[];
  health: NodeHealth;
  nodeStaleAfterMs: number;
  now: () => number;
}

/**
 * Places environments on nodes, one decision at a time (concurrent workers never overcommit a
 * node). An assignment counts as soon as it is decided ("assumed", as in kube-scheduler) until
 * the cache shows it written, or ASSUME_TTL_MS passes without that.
 */
export class Placement {
  readonly #d: PlacementDeps;
  readonly #assumed = new Map<string, { node: string; cpus: number; memoryMiB: number; at: number }>();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(deps: PlacementDeps) {
    this.#d = deps;
  }

  /** Picks a node for `env` and assumes it; `forget` gives the slot back if not written. */
  place(env: WaggleEnvironment): Promise<ScheduleResult> {
    const run = this.#queue.then(() => {
      const { cpus, memoryMiB } = env.spec.resources;
      const result = pickNode(
        {
          runtime: env.spec.runtime,
          cpus,
          memoryMiB,
          ...(env.spec.nodeName ? { nodeName: env.spec.nodeName } : {}),
        },
        this.#d.listNodes().map((n) => this.#d.health.view(n)),
        this.#allocations(),
        { staleAfterMs: this.#d.nodeStaleAfterMs },
      );
      if ('node' in result)
        this.#assumed.set(keyOf(env), { node: result.node, cpus, memoryMiB, at: this.#d.now() });
      return result;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  forget(key: string): void {
    this.#assumed.delete(key);
  }

  #allocations(): Map<string, Allocation> {
    const out = new Map<string, Allocation>();
    const add = (node: string, cpus: number, mem: number) => {
      const a = out.get(node) ?? { vms: 0, cpus: 0, memoryMiB: 0 };
      out.set(node, { vms: a.vms + 1, cpus: a.cpus + cpus, memoryMiB: a.memoryMiB + mem });
    };
    const seen = new Set<string>();
    for (const e of this.#d.listEnvs()) {
      const node = e.status?.nodeName;
      if (!node || e.status?.phase === 'Failed') continue;
      seen.add(keyOf(e));
      add(node, e.spec.resources.cpus, e.spec.resources.memoryMiB);
    }
    const now = this.#d.now();
    for (const [key, a] of this.#assumed) {
      // Drop an assumption once the cache shows the assignment, or when the cache has not
      // confirmed it within ASSUME_TTL_MS (kube-scheduler's rule): under a lagging informer a
      // conflicting retry can otherwise leave a phantom reservation that blocks a slot forever.
      if (seen.has(key) || now - a.at > ASSUME_TTL_MS) this.#assumed.delete(key);
      else add(a.node, a.cpus, a.memoryMiB);
    }
    return out;
  }
}
