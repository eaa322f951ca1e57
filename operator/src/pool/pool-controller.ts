import { poolRef, type WaggleEnvironment, type WaggleNode, type WagglePool } from '@waggle/crds';
import { classifyNodeAgentError, type NodeAgentClient } from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import type { NodeHealth } from '../environment/placement.ts';
import { Controller, type ReconcileResult } from '../runtime/controller.ts';
import { environmentAllocations, type Spread, spreadPools } from './spread.ts';
import { poolStatus, statusChanged } from './status.ts';
import type { PoolWriter } from './store.ts';
import { templateHash, toVMSpec, type WarmPoolInit } from './template.ts';

export interface PoolControllerConfig {
  /** Each node is told its whole set at least this often (a restarted agent re-learns it); default 60 s. */
  resyncMs?: number;
  /**
   * A node whose reported pools disagree with what it was told this long ago is told again (an
   * agent that restarted forgot them); default 15 s (a few heartbeats).
   */
  driftGraceMs?: number;
  /** Deadline of one SetWarmPools call; default 15 s. */
  agentCallTimeoutMs?: number;
}

export interface PoolControllerDeps {
  getPool: (key: string) => WagglePool | undefined;
  listPools: () => readonly WagglePool[];
  getNode: (name: string) => WaggleNode | undefined;
  listNodes: () => readonly WaggleNode[];
  listEnvs: () => readonly WaggleEnvironment[];
  /** Ready, heartbeat fresh (the same judgement as scheduling). */
  health: NodeHealth;
  nodeStaleAfterMs: number;
  agents: { for(endpoint: string, nodeName: string): Pick<NodeAgentClient, 'setWarmPools'> };
  store: PoolWriter;
  log: Logger;
  config?: PoolControllerConfig;
  /** The clock (tests inject one). */
  now?: () => number;
}

const DEFAULTS = { resyncMs: 60_000, driftGraceMs: 15_000, agentCallTimeoutMs: 15_000 };
const MAX_BACKOFF_MS = 30_000;
/** Events within this window are handled in one pass over every key. */
const BATCH_MS = 50;

export const nodeKey = (name: string) => `node:${name}`;
export const poolKey = (ref: string) => `pool:${ref}`;

interface Sent {
  signature: string;
  at: number;
  /** pool ref → replicas, as told. */
  replicas: Map<string, number>;
}

/**
 * Warm pools (docs/adr/0014): spreads each WagglePool's replicas over the Ready nodes
 * (spread.ts), tells every node its whole set with SetWarmPools — when it changes, when the node's
 * report disagrees, and every resync — and writes each pool's status from the nodes' reports.
 * Level-based: every decision is recomputed from the caches; what is kept in memory is only what
 * was last told to each node (a new leader tells every node once at start).
 */
export class PoolController {
  readonly #d: PoolControllerDeps;
  readonly #c: Required<PoolControllerConfig>;
  readonly #sent = new Map<string, Sent>();
  readonly #inFlight = new Set<string>();
  readonly #failures = new Map<string, { count: number; at: number }>();
  #controller: Controller | undefined;
  #batch: NodeJS.Timeout | undefined;
  /** The spread of the caches as of `changed()` call number `version` (one per batch of keys). */
  #version = 0;
  #spread: { version: number; value: Spread } | undefined;

  constructor(deps: PoolControllerDeps) {
    this.#d = deps;
    const c = deps.config ?? {};
    this.#c = {
      resyncMs: c.resyncMs ?? DEFAULTS.resyncMs,
      driftGraceMs: c.driftGraceMs ?? DEFAULTS.driftGraceMs,
      agentCallTimeoutMs: c.agentCallTimeoutMs ?? DEFAULTS.agentCallTimeoutMs,
    };
  }

  #now(): number {
    return this.#d.now?.() ?? Date.now();
  }

  start(): void {
    this.#controller = new Controller({
      name: 'wagglepool',
      workers: 2,
      reconcile: (key) => this.reconcile(key),
      log: this.#d.log,
    });
    this.#controller.start();
    this.#sent.clear(); // a new leader tells every node once
    this.changed();
  }

  async stop(): Promise<void> {
    if (this.#batch) clearTimeout(this.#batch);
    this.#batch = undefined;
    const c = this.#controller;
    this.#controller = undefined;
    await c?.stop();
  }

  /** Something a decision may depend on changed (a pool, a node, an environment): look at every key soon. */
  changed(): void {
    this.#version++;
    if (!this.#controller || this.#batch) return;
    this.#batch = setTimeout(() => {
      this.#batch = undefined;
      for (const key of this.keys()) this.#controller?.enqueue(key);
    }, BATCH_MS);
    this.#batch.unref();
  }

  /** Every key: each node with an endpoint or that was told something, and each pool. */
  keys(): string[] {
    const nodes = new Set(this.#sent.keys());
    for (const n of this.#d.listNodes()) if (n.status?.endpoint) nodes.add(n.metadata.name as string);
    return [...[...nodes].map(nodeKey), ...this.#d.listPools().map((p) => poolKey(poolRef(p)))];
  }

  /** The current assignment of every pool to nodes (computed once per change of the caches). */
  spread(): Spread {
    if (this.#spread?.version !== this.#version)
      this.#spread = { version: this.#version, value: this.#computeSpread() };
    return this.#spread.value;
  }

  #computeSpread(): Spread {
    const eligible = this.#d
      .listNodes()
      .filter((n) => n.status?.endpoint)
      .map((n) => this.#d.health.view(n))
      .filter((v) => v.ready && v.heartbeatAgeMs <= this.#d.nodeStaleAfterMs && !v.unschedulable);
    const pools = this.#d
      .listPools()
      .filter((p) => !p.metadata.deletionTimestamp)
      .map((p) => ({
        ref: poolRef(p),
        replicas: p.spec.replicas,
        runtime: p.spec.template.runtime,
        ...(p.spec.template.image ? { image: true } : {}),
        cpus: p.spec.template.resources.cpus,
        memoryMiB: p.spec.template.resources.memoryMiB,
      }));
    return spreadPools(pools, eligible, environmentAllocations(this.#d.listEnvs()));
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    if (key.startsWith('node:')) return this.#reconcileNode(key.slice('node:'.length));
    if (key.startsWith('pool:')) return this.#reconcilePool(key.slice('pool:'.length));
    return undefined;
  }

  /** Tells one node its whole set of warm pools when it needs telling. */
  #reconcileNode(name: string): ReconcileResult | undefined {
    const node = this.#d.getNode(name);
    const endpoint = node?.status?.endpoint;
    if (!node || !endpoint) {
      this.#sent.delete(name);
      this.#failures.delete(name);
      return undefined;
    }
    if (!this.#d.health.alive(name) || this.#inFlight.has(name)) return undefined; // node events bring it back
    const now = this.#now();
    const failure = this.#failures.get(name);
    if (failure) {
      const waitMs = Math.min(1_000 * 2 ** (failure.count - 1), MAX_BACKOFF_MS) - (now - failure.at);
      if (waitMs > 0) return { requeueAfterMs: waitMs };
    }

    const share = this.spread().byNode.get(name) ?? new Map<string, number>();
    const pools: WarmPoolInit[] = [];
    const hashes: string[] = [];
    for (const [ref, replicas] of [...share].sort(([a], [b]) => a.localeCompare(b))) {
      const pool = this.#d.getPool(ref);
      if (!pool) continue;
      pools.push({ name: ref, template: toVMSpec(pool.spec.template), replicas });
      hashes.push(`${ref}=${templateHash(pool.spec.template)}x${replicas}`);
    }
    const signature = hashes.join(',');
    const last = this.#sent.get(name);
    const sinceMs = last ? now - last.at : Number.POSITIVE_INFINITY;
    const drifted = last !== undefined && this.#drifted(node, last);
    const due =
      !last ||
      last.signature !== signature ||
      sinceMs >= this.#c.resyncMs ||
      (drifted && sinceMs >= this.#c.driftGraceMs);
    if (!due) {
      const untilDrift = drifted ? this.#c.driftGraceMs - sinceMs : Number.POSITIVE_INFINITY;
      return { requeueAfterMs: Math.max(1, Math.min(this.#c.resyncMs - sinceMs, untilDrift)) };
    }

    this.#inFlight.add(name);
    const agent = this.#d.agents.for(endpoint, name);
    // Off the worker: a black-holed node holds none of them (the call has its own deadline).
    void agent
      .setWarmPools({ pools }, { timeoutMs: this.#c.agentCallTimeoutMs })
      .then(
        () => {
          this.#sent.set(name, { signature, at: now, replicas: new Map(share) });
          this.#failures.delete(name);
          this.#d.log.info({ node: name, pools: hashes }, 'told node its warm pools');
        },
        (err: unknown) => {
          const count = (this.#failures.get(name)?.count ?? 0) + 1;
          this.#failures.set(name, { count, at: this.#now() });
          this.#d.log.warn(
            { node: name, err: classifyNodeAgentError(err).message, failures: count },
            'SetWarmPools failed; retrying with backoff',
          );
        },
      )
      .finally(() => {
        this.#inFlight.delete(name);
        this.#controller?.enqueue(nodeKey(name));
      });
    return undefined;
  }

  /** The node reports pools other than it was told (e.g. its agent restarted and forgot them). */
  #drifted(node: WaggleNode, last: Sent): boolean {
    const reported = new Map((node.status?.pools ?? []).map((p) => [p.name, p.replicas]));
    for (const [ref, replicas] of last.replicas) {
      if (replicas <= 0) continue;
      if (!reported.has(ref)) return true;
      const r = reported.get(ref);
      if (r !== undefined && r !== replicas) return true;
    }
    for (const [ref, r] of reported) if ((r ?? 0) > 0 && !last.replicas.has(ref)) return true;
    return false;
  }

  /** Writes a pool's status from its assignment and the nodes' reports. */
  async #reconcilePool(ref: string): Promise<undefined> {
    const pool = this.#d.getPool(ref);
    if (!pool || pool.metadata.deletionTimestamp) return undefined;
    const spread = this.spread();
    const assigned = new Map<string, number>();
    for (const [node, share] of spread.byNode) {
      const n = share.get(ref);
      if (n) assigned.set(node, n);
    }
    const reported = new Map<string, { ready: number; booting: number }>();
    for (const node of this.#d.listNodes()) {
      const name = node.metadata.name as string;
      if (!this.#d.health.alive(name)) continue;
      const p = node.status?.pools?.find((x) => x.name === ref);
      if (p) reported.set(name, { ready: p.ready, booting: p.booting });
    }
    const next = poolStatus(
      pool,
      { assigned, unplaced: spread.unplaced.get(ref) ?? 0, reported },
      new Date(this.#now()),
    );
    if (statusChanged(pool, next)) await this.#d.store.updateStatus(pool, next);
    return undefined;
  }
}
