import { NodeConditionType, type WaggleEnvironment, type WaggleNode, type WagglePool } from '@waggle/crds';
import { matchingPool } from '../pool/template.ts';
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
      ociImages: n.status?.ociImages ?? false,
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

  /** When the node-agent last wrote its status (its clock). */
  lastHeartbeat(name: string): string | undefined {
    return this.#d.getNode(name)?.status?.lastHeartbeatTime;
  }

  /** The node-agent endpoint of a registered node. */
  endpoint(name: string): string | undefined {
    return this.#d.getNode(name)?.status?.endpoint;
  }
}

export interface PlacementDeps {
  listEnvs: () => readonly WaggleEnvironment[];
  listNodes: () => readonly WaggleNode[];
  listPools: () => readonly WagglePool[];
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
  readonly #assumed = new Map<
    string,
    { node: string; cpus: number; memoryMiB: number; at: number; pool?: string }
  >();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(deps: PlacementDeps) {
    this.#d = deps;
  }

  /**
   * Picks a node for `env` and assumes it; `forget` gives the slot back if not written. An
   * environment whose spec is a pool's template (`pool`) goes where a warm VM of it waits.
   */
  place(env: WaggleEnvironment): Promise<ScheduleResult & { pool?: string }> {
    const run = this.#queue.then(() => {
      // An environment placed moments ago and not yet shown written (a warm bind whose status
      // write failed, a lagging cache) keeps its node: its VM may exist there already.
      const held = this.#assumed.get(keyOf(env));
      if (held && this.#d.now() - held.at <= ASSUME_TTL_MS)
        return { node: held.node, ...(held.pool ? { pool: held.pool } : {}) };
      const { cpus, memoryMiB } = env.spec.resources;
      const allocated = this.#allocations();
      const pool = matchingPool(env, this.#d.listPools());
      const result = pickNode(
        {
          runtime: env.spec.runtime,
          ...(env.spec.image ? { image: env.spec.image } : {}),
          cpus,
          memoryMiB,
          ...(env.spec.nodeName ? { nodeName: env.spec.nodeName } : {}),
          ...(pool ? { preferred: this.#warmNodes(pool) } : {}),
        },
        this.#d.listNodes().map((n) => this.#d.health.view(n)),
        allocated,
        { staleAfterMs: this.#d.nodeStaleAfterMs },
      );
      if ('node' in result)
        this.#assumed.set(keyOf(env), {
          node: result.node,
          cpus,
          memoryMiB,
          at: this.#d.now(),
          ...(pool ? { pool } : {}),
        });
      return pool && 'node' in result ? { ...result, pool } : result;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Places `env` on `node` without choosing (a CreateVM already ran there), assumed afresh; with
   * the pool its spec matches, if any.
   */
  pin(env: WaggleEnvironment, node: string): ScheduleResult & { pool?: string } {
    const { cpus, memoryMiB } = env.spec.resources;
    const pool = matchingPool(env, this.#d.listPools());
    this.#assumed.set(keyOf(env), { node, cpus, memoryMiB, at: this.#d.now(), ...(pool ? { pool } : {}) });
    return { node, ...(pool ? { pool } : {}) };
  }

  forget(key: string): void {
    this.#assumed.delete(key);
  }

  /**
   * Nodes that report a ready warm VM of `pool` not already claimed by an environment placed
   * there whose bind the node's report cannot show yet: still being created, or made from a
   * warm VM since the node's last heartbeat (whole seconds; a tie counts as a claim).
   */
  #warmNodes(pool: string): Set<string> {
    const claims = new Map<string, number>();
    const claim = (node: string) => claims.set(node, (claims.get(node) ?? 0) + 1);
    const reportedAt = (node: string) => Date.parse(this.#d.health.lastHeartbeat(node) ?? '');
    const seen = new Set<string>();
    for (const e of this.#d.listEnvs()) {
      const node = e.status?.nodeName;
      if (!node || e.status?.pool !== pool) continue;
      seen.add(keyOf(e));
      const phase = e.status.phase;
      const boundSinceReport =
        phase === 'Running' &&
        e.status.createdFrom === 'warm' &&
        !(Date.parse(e.status.startedAt ?? '') < reportedAt(node));
      if (phase === 'Scheduled' || phase === 'Booting' || boundSinceReport) claim(node);
    }
    for (const [key, a] of this.#assumed) if (a.pool === pool && !seen.has(key)) claim(a.node);
    const out = new Set<string>();
    for (const n of this.#d.listNodes()) {
      const name = n.metadata.name as string;
      const ready = n.status?.pools?.find((p) => p.name === pool)?.ready ?? 0;
      if (ready > (claims.get(name) ?? 0)) out.add(name);
    }
    return out;
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
