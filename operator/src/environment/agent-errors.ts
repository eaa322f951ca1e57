import { Code, ConnectError } from '@waggle/node-agent/client';

/**
 * The operator's one reading of a failed node-agent call:
 *  - `transient`: the call says nothing about the VM (the agent restarted mid-call — its stream
 *    ends with CANCEL/Aborted —, did not answer in time, or is unreachable): retry with backoff;
 *  - `vm-not-found`: the node has no VM with that id;
 *  - `node-full`: the node is fuller than its WaggleNode said: not the environment's fault;
 *  - `refused`: anything else (the VM failed to start, bad request): final for this call.
 */
export type AgentFailure = {
  kind: 'transient' | 'vm-not-found' | 'node-full' | 'refused';
  /** The node-agent's message, without the Connect code prefix. */
  message: string;
  error: ConnectError;
};

const TRANSIENT = new Set<Code>([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.Aborted]);

export function classifyAgentFailure(err: unknown): AgentFailure {
  const error = ConnectError.from(err);
  const kind = TRANSIENT.has(error.code)
    ? 'transient'
    : error.code === Code.NotFound
      ? 'vm-not-found'
      : error.code === Code.ResourceExhausted
        ? 'node-full'
        : 'refused';
  return { kind, message: error.rawMessage, error };
}
