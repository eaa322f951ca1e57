import type { WaggleEnvironment, WaggleEnvironmentStatus } from '@waggle/crds';
import type {
  DestroyVMResponse,
  GetVMResponse,
  NodeAgentClient,
  ResumeVMResponse,
  SuspendVMResponse,
} from '@waggle/node-agent/client';
import type { InvolvedObject } from './events.ts';

/**
 * What the reconciler needs from the world, as interfaces: the production implementations
 * (EnvironmentStore, AgentClients, EventRecorder) talk to the apiserver and node-agents; the
 * unit tests (reconciler.test.ts) use in-memory fakes with the same contracts.
 */

/** Writes to WaggleEnvironments; each returns the object as written (its new resourceVersion). */
export interface EnvironmentWriter {
  setFinalizer(env: WaggleEnvironment, present: boolean): Promise<WaggleEnvironment>;
  updateStatus(env: WaggleEnvironment, status: WaggleEnvironmentStatus): Promise<WaggleEnvironment>;
  delete(env: WaggleEnvironment): Promise<void>;
}

/** The node-agent calls the reconciler makes. */
export type VmAgent = Pick<
  NodeAgentClient,
  'createVM' | 'getVM' | 'destroyVM' | 'suspendVM' | 'resumeVM' | 'pullImage'
>;

/** The node-agent client for `nodeName` at `endpoint` (mTLS pins the node's identity). */
export interface VmAgents {
  for(endpoint: string, nodeName: string): VmAgent;
}

/** Records Kubernetes Events; never throws. */
export interface EventSink {
  record(obj: InvolvedObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
}

export type { DestroyVMResponse, GetVMResponse, ResumeVMResponse, SuspendVMResponse };
