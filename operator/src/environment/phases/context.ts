import type { WaggleEnvironment } from '@waggle/crds';
import type { Logger } from 'pino';
import type { ImagePulls } from '../image-pulls.ts';
import type { OffWorkerCalls } from '../off-worker-calls.ts';
import type { NodeHealth, Placement } from '../placement.ts';
import type {
  DestroyVMResponse,
  EnvironmentWriter,
  EventSink,
  GetVMResponse,
  ResumeVMResponse,
  SuspendVMResponse,
  VmAgents,
} from '../ports.ts';
import type { PullConfigSource } from '../pull-configs.ts';
import type { RetryBackoff } from '../retry-backoff.ts';
import type { StatusPatch } from '../status.ts';
import type { WrittenVersions } from '../written-versions.ts';

/** The reconciler's settings with their defaults applied. */
export interface PhaseConfig {
  nodeStaleAfterMs: number;
  nodeLostGraceMs: number;
  agentCallTimeoutMs: number;
  unschedulableRetryMs: number;
  destroyTimeoutMs: number;
  verifyEveryMs: number;
  /** Deadline of one CreateVM call; SuspendVM and ResumeVM (a memory image to or from disk) get it too. */
  createVMTimeoutMs: number;
  /** How long a pass waits inline for a warm bind (phases/bind-warm.ts). */
  warmBindWaitMs: number;
}

/** When the environment expires (idle timeout or maximum lifetime), as seen in this reconcile. */
export interface Lifetime {
  /** status.expiresAt as written: when it is deleted unless used again. */
  expiresAt: string;
  /** Until the next deadline: the deletion, or (idleAction Suspend) the suspension when sooner. */
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
  /** Registry credentials for an environment's image (templates); absent: anonymous pulls. */
  pullConfigs?: PullConfigSource;
  log: Logger;
  health: NodeHealth;
  placement: Placement;
  calls: {
    creates: OffWorkerCalls<unknown>;
    verifies: OffWorkerCalls<GetVMResponse>;
    destroys: OffWorkerCalls<DestroyVMResponse>;
    suspends: OffWorkerCalls<SuspendVMResponse>;
    resumes: OffWorkerCalls<ResumeVMResponse>;
  };
  /** Progress of the image pulls creates make before CreateVM, by UID. */
  imagePulls: ImagePulls;
  /** Failed environments whose VM this operator has destroyed (or found gone), by UID. */
  failedReleased: Set<string>;
  /** When this operator first saw a DestroyVM fail, by UID (the short retry window of finalize). */
  destroyFailingSince: Map<string, number>;
  /** The Suspended / Running writes of suspend and resume, until the cache shows them. */
  written: WrittenVersions;
  /** Backoff of failed SuspendVM / ResumeVM calls, by UID. */
  suspendRetry: RetryBackoff;
  resumeRetry: RetryBackoff;
  listEnvs: () => readonly WaggleEnvironment[];
  enqueue: (key: string) => void;
  onSchedulingFailure: () => void;
  /** Writes the status when the patch changes it; returns the object as now stored. */
  setStatus: (env: WaggleEnvironment, patch: StatusPatch) => Promise<WaggleEnvironment>;
}

export const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;
