import {
  CREATE_DEADLINE_DEFAULTS,
  deadlines,
  EnvironmentReason,
  k8sTime,
  suspension,
  type WaggleEnvironment,
  type WaggleNode,
  type WagglePool,
} from '@waggle/crds';
import { withEnvId } from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import type { ReconcileResult } from '../runtime/controller.ts';
import { ImagePulls } from './image-pulls.ts';
import { OffWorkerCalls } from './off-worker-calls.ts';
import { WARM_BIND_WAIT_MS } from './phases/bind-warm.ts';
import { boot } from './phases/boot.ts';
import type { Lifetime, PhaseConfig, PhaseContext } from './phases/context.ts';
import { finalize } from './phases/finalize.ts';
import { isMarkedUnreachable, nodeReachableAgain, nodeUnreachable } from './phases/node-reachability.ts';
import { releaseFailedVM } from './phases/release-failed.ts';
import { resumeOnActivity } from './phases/resume.ts';
import { schedule } from './phases/schedule.ts';
import { suspendIdle } from './phases/suspend.ts';
import { verifyRunning } from './phases/verify.ts';
import { keyOf, NodeHealth, Placement } from './placement.ts';
import type {
  DestroyVMResponse,
  EnvironmentWriter,
  EventSink,
  GetVMResponse,
  ResumeVMResponse,
  SuspendVMResponse,
  VmAgents,
} from './ports.ts';
import type { PullConfigSource } from './pull-configs.ts';
import { RetryBackoff } from './retry-backoff.ts';
import * as status from './status.ts';
import { FINALIZER } from './store.ts';
import { WrittenVersions } from './written-versions.ts';

export interface ReconcilerConfig {
  /**
   * A node whose heartbeat has not changed for this long (by the operator's clock) is
   * unreachable: nothing new is scheduled there, its environments say NodeReachable=False.
   */
  nodeStaleAfterMs: number;
  /**
   * How long an environment's node may stay unreachable before the environment fails as
   * NodeLost (and its VM is destroyed when the node answers again); default 10 min.
   */
  nodeLostGraceMs?: number;
  /** Deadline of the short node-agent calls (GetVM, DestroyVM); default 15 s. */
  agentCallTimeoutMs?: number;
  /** How soon an unschedulable environment is tried again (capacity changes also trigger it). */
  unschedulableRetryMs: number;
  /**
   * How long after the deletion (metadata.deletionTimestamp) the finalizer keeps trying to
   * destroy a VM on an unreachable node before releasing the environment.
   */
  destroyTimeoutMs: number;
  /** How often a Running environment's VM is checked on its node. */
  verifyEveryMs: number;
  /** Deadline of one CreateVM call (boot included); default 5 min. */
  createVMTimeoutMs?: number;
  /** How long a pass waits inline for a warm bind before recording Scheduled; default 1 s. */
  warmBindWaitMs?: number;
}

export interface ReconcilerDeps {
  getEnv: (key: string) => WaggleEnvironment | undefined;
  listEnvs: () => readonly WaggleEnvironment[];
  getNode: (name: string) => WaggleNode | undefined;
  listNodes: () => readonly WaggleNode[];
  /** WagglePools: an environment matching one is placed where a warm VM waits (default: none). */
  listPools?: () => readonly WagglePool[];
  /** How long a node's heartbeat has not changed, by the operator's clock (HeartbeatTracker). */
  nodeSilentForMs: (name: string) => number;
  store: EnvironmentWriter;
  agents: VmAgents;
  events: EventSink;
  log: Logger;
  config: ReconcilerConfig;
  /** Queue another key (e.g. pending environments when capacity frees). */
  enqueue: (key: string) => void;
  onSchedulingFailure?: () => void;
  /** Registry credentials of environments made from templates (default: anonymous pulls). */
  pullConfigs?: PullConfigSource;
  /** The clock (tests inject one); every time the reconciler reads comes from here. */
  now?: () => Date;
}

const DEFAULTS = {
  nodeLostGraceMs: 600_000,
  agentCallTimeoutMs: 15_000,
  createVMTimeoutMs: CREATE_DEADLINE_DEFAULTS.createVMMs,
  warmBindWaitMs: WARM_BIND_WAIT_MS,
};

/**
 * Level-based reconciler for WaggleEnvironments (docs/architecture.md, operator; ADR 0006).
 * `reconcile` reads the environment from the cache and hands it to the handler of its phase
 * (./phases); the handlers decide the next state and the status builders (./status.ts) say it.
 * What is kept in memory is only what a restart may lose: node-agent calls in flight, node
 * assignments not yet seen in the cache, which failed VMs were already released.
 */
export class EnvironmentReconciler {
  readonly #d: ReconcilerDeps;
  readonly #config: PhaseConfig;
  readonly #health: NodeHealth;
  readonly #placement: Placement;
  /** Node-agent calls by environment UID; they run outside the workers (a stuck node holds none). */
  readonly #calls = {
    creates: new OffWorkerCalls<unknown>(),
    verifies: new OffWorkerCalls<GetVMResponse>(),
    destroys: new OffWorkerCalls<DestroyVMResponse>(),
    suspends: new OffWorkerCalls<SuspendVMResponse>(),
    resumes: new OffWorkerCalls<ResumeVMResponse>(),
  };
  /** A resume is waited for by a caller (the gateway waits about a minute): retry it soon. */
  readonly #resumeRetry = new RetryBackoff({ baseMs: 1_000, maxMs: 15_000 });
  /** A failing suspension costs nothing but the VM's memory: retry it less often. */
  readonly #suspendRetry = new RetryBackoff({ baseMs: 5_000, maxMs: 300_000 });
  readonly #imagePulls = new ImagePulls();
  readonly #written = new WrittenVersions();
  readonly #failedReleased = new Set<string>();
  readonly #destroyFailingSince = new Map<string, number>();

  constructor(deps: ReconcilerDeps) {
    this.#d = deps;
    const c = deps.config;
    this.#config = {
      nodeStaleAfterMs: c.nodeStaleAfterMs,
      nodeLostGraceMs: c.nodeLostGraceMs ?? DEFAULTS.nodeLostGraceMs,
      agentCallTimeoutMs: c.agentCallTimeoutMs ?? DEFAULTS.agentCallTimeoutMs,
      unschedulableRetryMs: c.unschedulableRetryMs,
      destroyTimeoutMs: c.destroyTimeoutMs,
      verifyEveryMs: c.verifyEveryMs,
      createVMTimeoutMs: c.createVMTimeoutMs ?? DEFAULTS.createVMTimeoutMs,
      warmBindWaitMs: c.warmBindWaitMs ?? DEFAULTS.warmBindWaitMs,
    };
    this.#health = new NodeHealth({
      getNode: deps.getNode,
      nodeSilentForMs: deps.nodeSilentForMs,
      nodeStaleAfterMs: deps.config.nodeStaleAfterMs,
    });
    this.#placement = new Placement({
      listEnvs: deps.listEnvs,
      listNodes: deps.listNodes,
      listPools: deps.listPools ?? (() => []),
      health: this.#health,
      nodeStaleAfterMs: deps.config.nodeStaleAfterMs,
      now: () => this.#now().getTime(),
    });
  }

  #now(): Date {
    return this.#d.now?.() ?? new Date();
  }

  /**
   * What one reconcile of `env` works with. Its logger and its node-agent calls carry the
   * environment's id (`envId`, "<namespace>/<name>"; `vmId` its UID): the same `envId` as the
   * gateway's and the node-agent's lines about it (the `waggle-env-id` header).
   */
  #context(now: Date, env: WaggleEnvironment): PhaseContext {
    const d = this.#d;
    const envId = keyOf(env);
    const log = d.log.child({ envId, vmId: env.metadata.uid });
    return {
      now,
      config: this.#config,
      store: d.store,
      events: d.events,
      agents: { for: (endpoint, node) => withEnvId(d.agents.for(endpoint, node), envId) },
      ...(d.pullConfigs ? { pullConfigs: d.pullConfigs } : {}),
      log,
      health: this.#health,
      placement: this.#placement,
      calls: this.#calls,
      imagePulls: this.#imagePulls,
      failedReleased: this.#failedReleased,
      destroyFailingSince: this.#destroyFailingSince,
      written: this.#written,
      suspendRetry: this.#suspendRetry,
      resumeRetry: this.#resumeRetry,
      listEnvs: d.listEnvs,
      enqueue: d.enqueue,
      onSchedulingFailure: () => d.onSchedulingFailure?.(),
      setStatus: async (env, patch) => {
        const next = status.nextStatus(env, patch);
        if (!next) return env;
        const written = await d.store.updateStatus(env, next);
        if (next.phase !== env.status?.phase)
          log.info(
            { phase: next.phase, was: env.status?.phase, node: next.nodeName },
            'environment phase changed',
          );
        return written;
      },
    };
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    let env = this.#d.getEnv(key);
    if (!env) {
      this.#placement.forget(key);
      return undefined;
    }
    const ctx = this.#context(this.#now(), env);
    if (env.metadata.deletionTimestamp) return finalize(ctx, env);
    // The finalizer goes on before anything can exist on a node; the same pass goes on with
    // the object as written (a new environment is placed in this pass, not the next).
    if (!env.metadata.finalizers?.includes(FINALIZER)) env = await this.#d.store.setFinalizer(env, true);

    const d = deadlines(env, ctx.now);
    if (ctx.now >= d.expiresAt) return this.#expire(ctx, env, d.reason);
    const uid = env.metadata.uid as string;
    const now = ctx.now.getTime();
    // idleAction Suspend: the idle deadline suspends (see phases/suspend.ts) — due once reached
    // and not in a failed suspension's backoff.
    const suspendDue =
      d.suspendAt !== undefined && now >= d.suspendAt.getTime() && !this.#suspendRetry.waitMs(uid, now);
    const untilSuspendMs =
      d.suspendAt === undefined
        ? Number.POSITIVE_INFINITY
        : Math.max(1_000, d.suspendAt.getTime() - now, this.#suspendRetry.waitMs(uid, now));
    const life: Lifetime = {
      expiresAt: k8sTime(d.expiresAt),
      untilExpiryMs: Math.min(d.expiresAt.getTime() - now, untilSuspendMs),
      lastActivity: d.lastActivity,
    };

    if (env.status?.phase === 'Failed') {
      if (env.status.expiresAt !== life.expiresAt) await ctx.setStatus(env, { expiresAt: life.expiresAt });
      await releaseFailedVM(ctx, env);
      return { requeueAfterMs: life.untilExpiryMs };
    }

    // The cache has not shown this operator's last transition write yet (a warm bind's Running,
    // suspend, resume): acting on the older view would call the node again. The write's watch
    // event brings the key back.
    if (this.#written.isStale(env)) return undefined;
    const node = env.status?.nodeName;
    if (!node) return schedule(ctx, env, life);

    const unreachableMs = this.#health.unreachableForMs(node);
    if (unreachableMs > 0) return nodeUnreachable(ctx, env, node, unreachableMs, life);
    if (isMarkedUnreachable(env)) {
      await nodeReachableAgain(ctx, env, node);
      return undefined; // the update brings the object back through the queue
    }
    const endpoint = this.#health.endpoint(node);
    if (!endpoint) return { requeueAfterMs: 1_000 };
    const agent = ctx.agents.for(endpoint, node);
    switch (env.status?.phase) {
      case 'Running':
        // A ResumeVM result not taken (a repeated call from a lagging view) is of no use any more.
        if (!this.#calls.resumes.inFlight(uid)) this.#calls.resumes.forget(uid);
        return suspendDue || suspension(env) === 'suspending' || this.#calls.suspends.inFlight(uid)
          ? suspendIdle(ctx, env, node, agent, life)
          : verifyRunning(ctx, env, node, agent, life);
      case 'Suspended':
        return resumeOnActivity(ctx, env, node, agent, life);
      default:
        return boot(ctx, env, node, agent, life);
    }
  }

  async #expire(
    ctx: PhaseContext,
    env: WaggleEnvironment,
    reason: 'IdleTimeout' | 'MaxLifetime',
  ): Promise<undefined> {
    const why =
      reason === 'MaxLifetime'
        ? `maximum lifetime ${env.spec.maxLifetime}`
        : `idle timeout ${env.spec.idleTimeout}`;
    await ctx.setStatus(env, status.expired(env, ctx.now, why)).catch(() => undefined);
    await ctx.events.record(env, 'Normal', EnvironmentReason.Expired, `Deleting: ${why} reached`);
    await this.#d.store.delete(env);
    return undefined;
  }
}
