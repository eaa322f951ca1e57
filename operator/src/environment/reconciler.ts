import {
  deadlines,
  EnvironmentConditionType,
  EnvironmentReason,
  k8sTime,
  NodeConditionType,
  type WaggleEnvironment,
  type WaggleEnvironmentStatus,
  type WaggleNode,
} from '@waggle/crds';
import {
  Code,
  ConnectError,
  type DestroyVMResponse,
  Egress,
  type GetVMResponse,
  Runtime,
  VMState,
} from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import type { ReconcileResult } from '../runtime/controller.ts';
import type { AgentClients } from './agent-clients.ts';
import { getCondition, setCondition } from './conditions.ts';
import type { EventRecorder } from './events.ts';
import { OffWorkerCalls } from './off-worker-calls.ts';
import { type Allocation, type NodeView, pickNode } from './scheduler.ts';
import { type EnvironmentStore, FINALIZER } from './store.ts';

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
  /** How long the finalizer tries to destroy a VM on an unreachable node before releasing. */
  destroyTimeoutMs: number;
  /** How often a Running environment's VM is checked on its node. */
  verifyEveryMs: number;
  /** Deadline of one CreateVM call (boot included); default 5 min. */
  createTimeoutMs?: number;
}

export interface ReconcilerDeps {
  getEnv: (key: string) => WaggleEnvironment | undefined;
  listEnvs: () => readonly WaggleEnvironment[];
  getNode: (name: string) => WaggleNode | undefined;
  listNodes: () => readonly WaggleNode[];
  /** How long a node's heartbeat has not changed, by the operator's clock (HeartbeatTracker). */
  nodeSilentForMs: (name: string) => number;
  store: EnvironmentStore;
  agents: AgentClients;
  events: EventRecorder;
  log: Logger;
  config: ReconcilerConfig;
  /** Queue another key (e.g. pending environments when capacity frees). */
  enqueue: (key: string) => void;
  onSchedulingFailure?: () => void;
  now?: () => Date;
}

/** How long a written node assignment counts before the informer must have confirmed it. */
const ASSUME_TTL_MS = 5_000;

const RUNTIME = { python: Runtime.PYTHON, node: Runtime.NODE, shell: Runtime.SHELL } as const;
const keyOf = (e: WaggleEnvironment) => `${e.metadata.namespace}/${e.metadata.name}`;

const DEFAULT_NODE_LOST_GRACE_MS = 600_000;
/** Failures of a node-agent call that say nothing about the VM. */
const TRANSIENT = new Set<Code>([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.Aborted]);
const DEFAULT_AGENT_CALL_TIMEOUT_MS = 15_000;
const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;

/** Level-based reconciler for WaggleEnvironments (see docs/architecture.md, operator). */
export class EnvironmentReconciler {
  readonly #d: ReconcilerDeps;
  /** Node assignments written but not yet visible in the cache (kube-scheduler's "assume"). */
  readonly #assumed = new Map<string, { node: string; cpus: number; memoryMiB: number; at: number }>();
  /** Node-agent calls by environment UID; they run outside the workers (a stuck node holds none). */
  readonly #creates = new OffWorkerCalls<unknown>();
  readonly #verifies = new OffWorkerCalls<GetVMResponse>();
  readonly #destroys = new OffWorkerCalls<DestroyVMResponse>();
  /** When the finalizer first failed to reach a node, by UID. */
  readonly #destroyFailingSince = new Map<string, number>();
  #scheduling: Promise<unknown> = Promise.resolve();
  /** Failed environments whose VM this operator has destroyed (or found gone), by UID. */
  readonly #failedReleased = new Set<string>();

  constructor(deps: ReconcilerDeps) {
    this.#d = deps;
  }

  #now(): Date {
    return this.#d.now?.() ?? new Date();
  }

  get #callTimeoutMs(): number {
    return this.#d.config.agentCallTimeoutMs ?? DEFAULT_AGENT_CALL_TIMEOUT_MS;
  }

  #nodeView(n: WaggleNode): NodeView {
    const ready = getCondition(n.status?.conditions, NodeConditionType.Ready)?.status === 'True';
    const name = n.metadata.name as string;
    return {
      name,
      ready,
      heartbeatAgeMs: this.#d.nodeSilentForMs(name),
      unschedulable: n.spec?.unschedulable ?? false,
      runtimes: n.status?.runtimes ?? [],
      capacity: n.status?.capacity ?? { vms: 0, cpus: 0, memoryMiB: 0 },
    };
  }

  /** True when the node can be trusted to run VMs: registered, Ready, heartbeat fresh. */
  #nodeAlive(name: string): boolean {
    const n = this.#d.getNode(name);
    if (!n) return false;
    const v = this.#nodeView(n);
    return v.ready && v.heartbeatAgeMs <= this.#d.config.nodeStaleAfterMs;
  }

  /** How long past the stale window the node has been silent (0: it heartbeats). */
  #unreachableForMs(name: string): number {
    return Math.max(0, this.#d.nodeSilentForMs(name) - this.#d.config.nodeStaleAfterMs);
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
    const now = Date.now();
    for (const [key, a] of this.#assumed) {
      // Drop an assumption once the cache shows the assignment, or when the cache has not
      // confirmed it within ASSUME_TTL_MS (kube-scheduler's rule): under a lagging informer a
      // conflicting retry can otherwise leave a phantom reservation that blocks a slot forever.
      if (seen.has(key) || now - a.at > ASSUME_TTL_MS) this.#assumed.delete(key);
      else add(a.node, a.cpus, a.memoryMiB);
    }
    return out;
  }

  async #setStatus(env: WaggleEnvironment, patch: Partial<WaggleEnvironmentStatus>): Promise<void> {
    const status: WaggleEnvironmentStatus = {
      ...env.status,
      ...patch,
      observedGeneration: env.metadata.generation ?? 0,
    };
    if (JSON.stringify(status) === JSON.stringify(env.status)) return;
    await this.#d.store.updateStatus(env, status);
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const env = this.#d.getEnv(key);
    if (!env) {
      this.#assumed.delete(key);
      return undefined;
    }
    const uid = env.metadata.uid as string;
    if (env.metadata.deletionTimestamp) return this.#finalize(env);
    if (!env.status?.phase) {
      // Seen for the first time: say so (kubectl shows Pending, as for a new Pod).
      await this.#setStatus(env, { phase: 'Pending', message: 'waiting to be scheduled' });
      return undefined; // the update brings the object back through the queue
    }
    if (!env.metadata.finalizers?.includes(FINALIZER)) {
      await this.#d.store.setFinalizer(env, true);
      return undefined;
    }

    const now = this.#now();
    const d = deadlines(env, now);
    if (now >= d.expiresAt) {
      const why =
        d.reason === 'MaxLifetime'
          ? `maximum lifetime ${env.spec.maxLifetime}`
          : `idle timeout ${env.spec.idleTimeout}`;
      await this.#setStatus(env, {
        conditions: setCondition(env.status?.conditions, {
          type: EnvironmentConditionType.Ready,
          status: 'False',
          reason: EnvironmentReason.Expired,
          message: `expired: ${why} reached`,
        }),
      }).catch(() => undefined);
      await this.#d.events.record(env, 'Normal', EnvironmentReason.Expired, `Deleting: ${why} reached`);
      await this.#d.store.delete(env);
      return undefined;
    }
    const untilExpiry = d.expiresAt.getTime() - now.getTime();
    const expiresAt = k8sTime(d.expiresAt);

    if (env.status?.phase === 'Failed') {
      if (env.status.expiresAt !== expiresAt) await this.#setStatus(env, { expiresAt });
      await this.#releaseFailedVM(env);
      return { requeueAfterMs: untilExpiry };
    }

    const nodeName = env.status?.nodeName;
    if (!nodeName) return this.#schedule(env, expiresAt, untilExpiry);

    const unreachableMs = this.#unreachableForMs(nodeName);
    if (unreachableMs > 0) return this.#nodeUnreachable(env, nodeName, unreachableMs, expiresAt, untilExpiry);
    if (getCondition(env.status?.conditions, EnvironmentConditionType.NodeReachable)?.status === 'False') {
      await this.#nodeReachableAgain(env, nodeName);
      return undefined; // the update brings the object back through the queue
    }
    const endpoint = this.#d.getNode(nodeName)?.status?.endpoint;
    if (!endpoint) return { requeueAfterMs: 1_000 };
    const agent = this.#d.agents.for(endpoint, nodeName);

    if (env.status?.phase !== 'Running') {
      const creation = this.#creates.take(
        uid,
        () =>
          agent.createVM(
            {
              spec: {
                vmId: uid,
                runtime: RUNTIME[env.spec.runtime],
                cpus: env.spec.resources.cpus,
                memoryMib: env.spec.resources.memoryMiB,
                diskMib: env.spec.resources.diskMiB,
                egress: env.spec.network.egress === 'none' ? Egress.NONE : Egress.ALL,
                allowDomains: env.spec.network.allowDomains ?? [],
              },
            },
            { timeoutMs: this.#d.config.createTimeoutMs ?? 300_000 },
          ),
        () => this.#d.enqueue(key),
      );
      if (creation.state === 'started') {
        await this.#setStatus(env, {
          phase: 'Booting',
          expiresAt,
          message: `booting a ${env.spec.runtime} microVM on ${nodeName}`,
          conditions: setCondition(env.status?.conditions, {
            type: EnvironmentConditionType.Ready,
            status: 'False',
            reason: EnvironmentReason.Booting,
            message: `creating the VM on ${nodeName}`,
          }),
        });
        return undefined;
      }
      if (creation.state === 'pending') return undefined; // its completion enqueues the key
      if (creation.state === 'failed') {
        const err = ConnectError.from(creation.error);
        // The node-agent went away mid-call (restart, rollout: its stream ends with CANCEL, since
        // the operator never cancels its own CreateVM) or did not answer: retry with backoff; the
        // agent adopts or re-creates the VM under the same id.
        if (TRANSIENT.has(err.code)) throw err;
        if (err.code === Code.ResourceExhausted) {
          // The node is fuller than its WaggleNode said (a VM the operator does not count, a
          // capacity change): not the environment's fault. Give the slot back and schedule again.
          this.#assumed.delete(key);
          const message = `node ${nodeName} refused the VM (${err.rawMessage}); scheduling again`;
          await this.#setStatus(env, {
            phase: 'Pending',
            nodeName: undefined,
            expiresAt,
            message,
            conditions: setCondition(
              setCondition(env.status?.conditions, {
                type: EnvironmentConditionType.Scheduled,
                status: 'False',
                reason: EnvironmentReason.Unschedulable,
                message,
              }),
              {
                type: EnvironmentConditionType.Ready,
                status: 'False',
                reason: EnvironmentReason.Unschedulable,
                message,
              },
            ),
          });
          await this.#d.events.record(env, 'Warning', EnvironmentReason.Unschedulable, message);
          return { requeueAfterMs: Math.min(this.#d.config.unschedulableRetryMs, untilExpiry) };
        }
        await this.#fail(
          env,
          EnvironmentReason.VMFailed,
          `the VM did not start: ${err.rawMessage}`,
          expiresAt,
        );
        return { requeueAfterMs: untilExpiry };
      }
      await this.#setStatus(env, {
        phase: 'Running',
        vmId: uid,
        startedAt: k8sTime(now),
        expiresAt,
        message: `running on ${nodeName}`,
        conditions: setCondition(env.status?.conditions, {
          type: EnvironmentConditionType.Ready,
          status: 'True',
          reason: EnvironmentReason.Running,
          message: 'the guest is ready',
        }),
      });
      await this.#d.events.record(env, 'Normal', EnvironmentReason.Running, `VM ready on ${nodeName}`);
      return { requeueAfterMs: Math.min(untilExpiry, this.#d.config.verifyEveryMs) };
    }

    // Running: keep expiry current, and make sure the VM still exists and runs (the GetVM runs
    // off the worker with a deadline; its completion brings the key back).
    const lastActivityTime = k8sTime(d.lastActivity);
    if (env.status?.expiresAt !== expiresAt || env.status?.lastActivityTime !== lastActivityTime) {
      await this.#setStatus(env, { expiresAt, lastActivityTime });
    }
    const verify = this.#verifies.take(
      uid,
      () => agent.getVM({ vmId: uid }, { timeoutMs: this.#callTimeoutMs }),
      () => this.#d.enqueue(key),
    );
    if (verify.state === 'started' || verify.state === 'pending') return undefined;
    if (verify.state === 'failed') {
      const err = ConnectError.from(verify.error);
      if (err.code === Code.NotFound) {
        await this.#fail(env, EnvironmentReason.VMFailed, `the VM disappeared from ${nodeName}`, expiresAt);
        return { requeueAfterMs: untilExpiry };
      }
      throw err; // retried with backoff; the VM is not judged on a failed call
    }
    const vm = verify.value.vm;
    if (vm?.state === VMState.VM_STATE_FAILED) {
      await this.#fail(
        env,
        EnvironmentReason.VMExited,
        `the VM on ${nodeName} stopped: ${vm.message || 'its QEMU exited'}`,
        expiresAt,
      );
      return { requeueAfterMs: untilExpiry };
    }
    return { requeueAfterMs: Math.min(untilExpiry, this.#d.config.verifyEveryMs) };
  }

  /**
   * The environment's node has not heartbeated past the stale window. Its VM is most likely
   * fine (an agent restart, a slow rollout, an apiserver or network blip): keep it, say so in
   * NodeReachable=False, and wait. Only past the node-lost grace does the environment fail.
   */
  async #nodeUnreachable(
    env: WaggleEnvironment,
    nodeName: string,
    unreachableMs: number,
    expiresAt: string,
    untilExpiry: number,
  ): Promise<ReconcileResult> {
    const graceMs = this.#d.config.nodeLostGraceMs ?? DEFAULT_NODE_LOST_GRACE_MS;
    const silentMs = unreachableMs + this.#d.config.nodeStaleAfterMs;
    if (unreachableMs >= graceMs) {
      await this.#fail(
        env,
        EnvironmentReason.NodeLost,
        `node ${nodeName} sent no heartbeat for ${seconds(silentMs)} (node-lost grace ${seconds(graceMs)}); ` +
          'the environment is lost, and its VM is destroyed if the node comes back',
        expiresAt,
      );
      return { requeueAfterMs: untilExpiry };
    }
    const wasReachable =
      getCondition(env.status?.conditions, EnvironmentConditionType.NodeReachable)?.status !== 'False';
    const message =
      `node ${nodeName} stopped heartbeating; the VM is kept and the environment recovers when ` +
      `the node reports again (it fails as NodeLost after ${seconds(graceMs)} unreachable)`;
    await this.#setStatus(env, {
      expiresAt,
      message,
      conditions: setCondition(
        setCondition(env.status?.conditions, {
          type: EnvironmentConditionType.NodeReachable,
          status: 'False',
          reason: EnvironmentReason.NodeUnreachable,
          message,
        }),
        {
          type: EnvironmentConditionType.Ready,
          status: 'False',
          reason: EnvironmentReason.NodeUnreachable,
          message,
        },
      ),
    });
    if (wasReachable) await this.#d.events.record(env, 'Warning', EnvironmentReason.NodeUnreachable, message);
    // Node events bring the key back when heartbeats return; poll too (no call is made).
    return {
      requeueAfterMs: Math.max(
        1_000,
        Math.min(graceMs - unreachableMs, untilExpiry, this.#d.config.verifyEveryMs),
      ),
    };
  }

  async #nodeReachableAgain(env: WaggleEnvironment, nodeName: string): Promise<void> {
    const running = env.status?.phase === 'Running';
    const message = `node ${nodeName} heartbeats again`;
    let conditions = setCondition(env.status?.conditions, {
      type: EnvironmentConditionType.NodeReachable,
      status: 'True',
      reason: EnvironmentReason.NodeReachable,
      message,
    });
    if (running) {
      conditions = setCondition(conditions, {
        type: EnvironmentConditionType.Ready,
        status: 'True',
        reason: EnvironmentReason.Running,
        message: 'the guest is ready',
      });
    }
    await this.#setStatus(env, {
      message: running ? `running on ${nodeName}` : `waiting for the VM on ${nodeName}`,
      conditions,
    });
    await this.#d.events.record(env, 'Normal', EnvironmentReason.NodeReachable, message);
  }

  /**
   * A Failed environment is terminal: nobody can use its VM, and a Failed environment does not
   * count against its node's capacity. So once its node answers again (a NodeLost node that came
   * back re-adopts the VM), destroy the VM there; the object stays for the user to read.
   */
  async #releaseFailedVM(env: WaggleEnvironment): Promise<void> {
    const uid = env.metadata.uid as string;
    const nodeName = env.status?.nodeName;
    if (!nodeName || this.#failedReleased.has(uid) || !this.#nodeAlive(nodeName)) return;
    const endpoint = this.#d.getNode(nodeName)?.status?.endpoint;
    if (!endpoint) return;
    const agent = this.#d.agents.for(endpoint, nodeName);
    const r = this.#destroys.take(
      uid,
      () => agent.destroyVM({ vmId: uid }, { timeoutMs: this.#callTimeoutMs }),
      () => this.#d.enqueue(keyOf(env)),
    );
    if (r.state === 'failed') {
      this.#d.log.warn(
        { envId: env.metadata.name, node: nodeName, err: ConnectError.from(r.error).rawMessage },
        'could not destroy a failed environment’s VM; trying again on the next reconcile',
      );
    } else if (r.state === 'done') {
      this.#failedReleased.add(uid);
      if (r.value.existed)
        await this.#d.events.record(
          env,
          'Normal',
          'VMDestroyed',
          `destroyed the failed environment's VM on ${nodeName}`,
        );
    }
  }

  async #schedule(env: WaggleEnvironment, expiresAt: string, untilExpiry: number): Promise<ReconcileResult> {
    // One scheduling decision at a time, so concurrent workers never overcommit a node.
    const run = this.#scheduling.then(async () => {
      const nodes = this.#d.listNodes().map((n) => this.#nodeView(n));
      const result = pickNode(
        {
          runtime: env.spec.runtime,
          cpus: env.spec.resources.cpus,
          memoryMiB: env.spec.resources.memoryMiB,
          ...(env.spec.nodeName ? { nodeName: env.spec.nodeName } : {}),
        },
        nodes,
        this.#allocations(),
        { staleAfterMs: this.#d.config.nodeStaleAfterMs },
      );
      if (!('reason' in result)) {
        this.#assumed.set(keyOf(env), {
          node: result.node,
          cpus: env.spec.resources.cpus,
          memoryMiB: env.spec.resources.memoryMiB,
          at: Date.now(),
        });
      }
      return result;
    });
    this.#scheduling = run.catch(() => undefined);
    const result = await run;
    if ('reason' in result) {
      this.#d.onSchedulingFailure?.();
      const wasUnschedulable =
        getCondition(env.status?.conditions, EnvironmentConditionType.Scheduled)?.reason ===
        EnvironmentReason.Unschedulable;
      await this.#setStatus(env, {
        phase: 'Pending',
        expiresAt,
        message: result.reason,
        conditions: setCondition(env.status?.conditions, {
          type: EnvironmentConditionType.Scheduled,
          status: 'False',
          reason: EnvironmentReason.Unschedulable,
          message: result.reason,
        }),
      });
      if (!wasUnschedulable)
        await this.#d.events.record(env, 'Warning', EnvironmentReason.Unschedulable, result.reason);
      return { requeueAfterMs: Math.min(this.#d.config.unschedulableRetryMs, untilExpiry) };
    }
    try {
      await this.#setStatus(env, {
        phase: 'Scheduled',
        nodeName: result.node,
        expiresAt,
        message: `scheduled to ${result.node}`,
        conditions: setCondition(env.status?.conditions, {
          type: EnvironmentConditionType.Scheduled,
          status: 'True',
          reason: EnvironmentReason.Scheduled,
          message: `assigned to node ${result.node}`,
        }),
      });
    } catch (err) {
      this.#assumed.delete(keyOf(env)); // not written: give the slot back
      throw err;
    }
    await this.#d.events.record(env, 'Normal', EnvironmentReason.Scheduled, `Assigned to ${result.node}`);
    return { requeueAfterMs: Math.min(untilExpiry, this.#d.config.verifyEveryMs) };
  }

  async #fail(env: WaggleEnvironment, reason: string, message: string, expiresAt: string): Promise<void> {
    if (env.status?.phase === 'Failed') return;
    await this.#setStatus(env, {
      phase: 'Failed',
      expiresAt,
      message,
      conditions: setCondition(env.status?.conditions, {
        type: EnvironmentConditionType.Ready,
        status: 'False',
        reason,
        message,
      }),
    });
    await this.#d.events.record(env, 'Warning', reason, message);
  }

  /**
   * Destroys the environment's VM on its node. Returns true when the finalizer may be released:
   * the VM is gone, or the node could not be reached (or was not registered) for
   * destroyTimeoutMs, which is recorded as an Event. Otherwise returns when to try again.
   */
  async #destroyOnNode(env: WaggleEnvironment, nodeName: string): Promise<true | ReconcileResult> {
    const uid = env.metadata.uid as string;
    const since = this.#destroyFailingSince.get(uid) ?? Date.now();
    const waitedMs = Date.now() - since;
    const limitS = Math.round(this.#d.config.destroyTimeoutMs / 1000);
    const orphanHint =
      "If the node comes back, the operator destroys the orphaned VM (id = this environment's UID) there.";
    const endpoint = this.#d.getNode(nodeName)?.status?.endpoint;
    if (!endpoint) {
      // The WaggleNode is gone (deleted, or its agent not re-registered yet): wait for it, bounded.
      if (waitedMs < this.#d.config.destroyTimeoutMs) {
        this.#destroyFailingSince.set(uid, since);
        return { requeueAfterMs: Math.min(5_000, this.#d.config.destroyTimeoutMs - waitedMs) };
      }
      await this.#d.events.record(
        env,
        'Warning',
        'VMNotDestroyed',
        `node ${nodeName} has not been registered for ${limitS} s; releasing the environment. ${orphanHint}`,
      );
      return true;
    }
    const agent = this.#d.agents.for(endpoint, nodeName);
    const r = this.#destroys.take(
      uid,
      () => agent.destroyVM({ vmId: uid }, { timeoutMs: this.#callTimeoutMs }),
      () => this.#d.enqueue(keyOf(env)),
    );
    if (r.state === 'started' || r.state === 'pending') {
      this.#destroyFailingSince.set(uid, since);
      return { requeueAfterMs: this.#callTimeoutMs + 1_000 }; // its completion enqueues the key sooner
    }
    if (r.state === 'done') return true;
    this.#destroyFailingSince.set(uid, since);
    if (waitedMs < this.#d.config.destroyTimeoutMs) throw r.error; // retry with backoff
    await this.#d.events.record(
      env,
      'Warning',
      'VMNotDestroyed',
      `could not destroy the VM on ${nodeName} for ${limitS} s ` +
        `(${ConnectError.from(r.error).rawMessage}); releasing the environment. ${orphanHint}`,
    );
    return true;
  }

  async #finalize(env: WaggleEnvironment): Promise<ReconcileResult | undefined> {
    const uid = env.metadata.uid as string;
    if (!env.metadata.finalizers?.includes(FINALIZER)) return undefined;
    const nodeName = env.status?.nodeName;
    if (env.status?.phase !== 'Terminating') {
      await this.#setStatus(env, {
        phase: 'Terminating',
        message: 'destroying the VM',
        conditions: setCondition(env.status?.conditions, {
          type: EnvironmentConditionType.Ready,
          status: 'False',
          reason: EnvironmentReason.Terminating,
          message: 'deletion in progress',
        }),
      }).catch(() => undefined);
      await this.#d.events.record(
        env,
        'Normal',
        EnvironmentReason.Terminating,
        nodeName ? `Destroying the VM on ${nodeName}` : 'Deleting (no VM was started)',
      );
    }
    // A CreateVM still in flight would race the destroy and could leave a VM behind; its
    // completion (bounded by createTimeoutMs) enqueues this key again.
    if (this.#creates.inFlight(uid)) return { requeueAfterMs: 5_000 };
    if (nodeName) {
      const released = await this.#destroyOnNode(env, nodeName);
      if (released !== true) return released;
    }
    this.#destroyFailingSince.delete(uid);
    this.#creates.forget(uid);
    this.#verifies.forget(uid);
    this.#destroys.forget(uid);
    this.#failedReleased.delete(uid);
    this.#assumed.delete(keyOf(env));
    await this.#d.store.setFinalizer(env, false);
    // Capacity freed: let pending environments try again.
    for (const e of this.#d.listEnvs())
      if (!e.status?.nodeName && !e.metadata.deletionTimestamp) this.#d.enqueue(keyOf(e));
    return undefined;
  }
}
