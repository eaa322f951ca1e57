import type { WaggleEnvironment } from '@waggle/crds';
import type { Logger } from 'pino';
import type { OffWorkerCalls } from '../off-worker-calls.ts';
import type { NodeHealth, Placement } from '../placement.ts';
import type { DestroyVMResponse, EnvironmentWriter, EventSink, GetVMResponse, VmAgents } from '../ports.ts';
import type { StatusPatch } from '../status.ts';

/** The reconciler's settings with their defaults applied. */
export interface PhaseConfig {
  nodeStaleAfterMs: number;
  nodeLostGraceMs: number;
  agentCallTimeoutMs: number;
  unschedulableRetryMs: number;
  destroyTimeoutMs: number;
  verifyEveryMs: number;
  createVMTimeoutMs: number;
}

/** When the environment expires (idle timeout or maximum lifetime), as seen in this reconcile. */
export interface Lifetime {
  /** status.expiresAt as written. */
  expiresAt: string;
  untilExpiryMs: number;
  lastActivity: Date;
}

/**
 * Everything a phase handler may use: the clock of this reconcile, the ports, the shared
 * in-memory state (off-worker calls, placement) and the two status writers.
 */
export interface PhaseContext {
  now: Date;
  config: PhaseConfig;
  store: EnvironmentWriter;
  events: EventSink;
  agents: VmAgents;
  log: Logger;
  health: NodeHealth;
  placement: Placement;
  calls: {
    creates: OffWorkerCalls<unknown>;
    verifies: OffWorkerCalls<GetVMResponse>;
    destroys: OffWorkerCalls<DestroyVMResponse>;
  };
  /** Failed environments whose VM this operator has destroyed (or found gone), by UID. */
  failedReleased: Set<string>;
  /** When this operator first saw a DestroyVM fail, by UID (the short retry window of finalize). */
  destroyFailingSince: Map<string, number>;
  listEnvs: () => readonly WaggleEnvironment[];
  enqueue: (key: string) => void;
  onSchedulingFailure: () => void;
  /** Writes the status when the patch changes it; returns the object as now stored. */
  setStatus: (env: WaggleEnvironment, patch: StatusPatch) => Promise<WaggleEnvironment>;
}

export const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;
