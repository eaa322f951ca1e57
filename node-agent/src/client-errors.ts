// The one reading of a failed node-agent call for its consumers (operator, gateway): a Connect
// code alone is ambiguous (NotFound: the VM, a file or a process?), so the typed details the
// agent attaches (node_agent.proto, "Error details") decide first, then the code.
import { Code, ConnectError } from '@connectrpc/connect';
import {
  type FileErrorDetail,
  FileErrorDetailSchema,
  type ImageErrorDetail,
  ImageErrorDetailSchema,
  type PortNotListeningDetail,
  PortNotListeningDetailSchema,
  type ProcessNotFoundDetail,
  ProcessNotFoundDetailSchema,
  type VMExitedDetail,
  VMExitedDetailSchema,
  VMSuspendedDetailSchema,
} from './gen/waggle/nodeagent/v1/node_agent_pb.js';
import { detailFromLegacyHeaders } from './legacy-error-headers.ts';

/**
 * What a failed node-agent call means:
 *  - `transient`: says nothing about the VM — the agent restarted mid-call (its stream ends with
 *    Canceled/Aborted), did not answer in time, or cannot be reached: retry (with backoff);
 *  - `vm-not-found`: the node has no VM with that id;
 *  - `vm-exited`: the VM's QEMU is gone (killed, crashed, out of memory); nothing runs in it;
 *  - `vm-suspended`: the VM is suspended (SuspendVM); nothing runs in it until ResumeVM;
 *  - `resource-exhausted`: the node (VM slots, cpus, memory, an image for the runtime) or the VM
 *    (background processes, open tunnels) is at a limit; elsewhere or later may work;
 *  - `file`: a file RPC failed for a reason the caller can act on (`detail.kind`, `detail.path`);
 *  - `process-not-found`: no such background process in the VM (the VM exists);
 *  - `port-not-listening`: nothing accepts connections on the guest port;
 *  - `invalid-argument`: the request was wrong (the message names the field and the fix);
 *  - `image`: the VM's OCI image cannot run — not allowed, not found, unauthorized, too large,
 *    missing /bin/sh or the interpreter (`detail.reason`, `detail.image`); an unreachable
 *    registry is `transient`;
 *  - `other`: anything else (the VM failed to boot, a conflicting spec, a refused identity, a
 *    bug): final for this call; `error.code` says more.
 */
export type NodeAgentFailure = {
  /** The node-agent's message, without the Connect code prefix. */
  message: string;
  error: ConnectError;
} & (
  | { kind: 'transient' }
  | { kind: 'vm-not-found' }
  | { kind: 'vm-exited'; detail: VMExitedDetail }
  | { kind: 'vm-suspended' }
  | { kind: 'resource-exhausted' }
  | { kind: 'file'; detail: FileErrorDetail }
  | { kind: 'process-not-found'; detail: ProcessNotFoundDetail }
  | { kind: 'port-not-listening'; detail: PortNotListeningDetail }
  | { kind: 'invalid-argument' }
  | { kind: 'image'; detail: ImageErrorDetail }
  | { kind: 'other' }
);

/** Codes of calls that say nothing about the VM they were about. */
const TRANSIENT: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Canceled,
  Code.Aborted,
]);

/** Classifies any error thrown by a node-agent client call (a non-Connect error is `other`, Unknown). */
export function classifyNodeAgentError(err: unknown): NodeAgentFailure {
  const error = ConnectError.from(err);
  const base = { message: error.rawMessage, error };
  const [file] = error.findDetails(FileErrorDetailSchema);
  if (file) return { ...base, kind: 'file', detail: file };
  const [proc] = error.findDetails(ProcessNotFoundDetailSchema);
  if (proc) return { ...base, kind: 'process-not-found', detail: proc };
  const [port] = error.findDetails(PortNotListeningDetailSchema);
  if (port) return { ...base, kind: 'port-not-listening', detail: port };
  const [exited] = error.findDetails(VMExitedDetailSchema);
  if (exited) return { ...base, kind: 'vm-exited', detail: exited };
  if (error.findDetails(VMSuspendedDetailSchema).length > 0) return { ...base, kind: 'vm-suspended' };
  // An agent from before VMSuspendedDetail said it only in words (remove with the legacy headers).
  if (error.code === Code.FailedPrecondition && /^VM \S+ is suspended; /.test(base.message))
    return { ...base, kind: 'vm-suspended' };
  const legacy = detailFromLegacyHeaders(error); // an agent from before the typed details
  if (legacy) return { ...base, ...legacy };
  if (TRANSIENT.has(error.code)) return { ...base, kind: 'transient' }; // an unreachable registry too
  const [image] = error.findDetails(ImageErrorDetailSchema);
  if (image) return { ...base, kind: 'image', detail: image };
  switch (error.code) {
    case Code.NotFound:
      return { ...base, kind: 'vm-not-found' };
    case Code.ResourceExhausted:
      return { ...base, kind: 'resource-exhausted' };
    case Code.InvalidArgument:
      return { ...base, kind: 'invalid-argument' };
    default:
      return { ...base, kind: 'other' };
  }
}
