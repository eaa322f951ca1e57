// Compatibility for one release (remove in the release after 0.2): before the typed error details
// (ADR 0005, "Error details"), the agent said what a NotFound/FailedPrecondition was about in
// plain-string response headers. `helm upgrade` rolls the DaemonSet and the Deployments at the
// same time, so for one release the agent sends both, and the client reads the headers when an
// older agent sent no detail.

import { create } from '@bufbuild/protobuf';
import type { ConnectError } from '@connectrpc/connect';
import {
  type FileErrorDetail,
  FileErrorDetailSchema,
  FileErrorKind,
  type PortNotListeningDetail,
  PortNotListeningDetailSchema,
  type ProcessNotFoundDetail,
  ProcessNotFoundDetailSchema,
  ProcessNotFoundReason,
  type VMExitedDetail,
  VMExitedDetailSchema,
} from './gen/waggle/nodeagent/v1/node_agent_pb.js';

const FILE = 'waggle-file-error';
const PROCESS = 'waggle-process-error';
const PROCESS_IDS = 'waggle-process-ids';
const PORT = 'waggle-port-error';
const VM_STATE = 'waggle-vm-state';

/** The file error codes of the old header, by FileErrorKind. */
const FILE_KIND_NAMES: Record<FileErrorKind, string> = {
  [FileErrorKind.UNSPECIFIED]: 'failed',
  [FileErrorKind.NOT_FOUND]: 'not_found',
  [FileErrorKind.IS_DIRECTORY]: 'is_directory',
  [FileErrorKind.NOT_DIRECTORY]: 'not_directory',
  [FileErrorKind.TOO_LARGE]: 'too_large',
  [FileErrorKind.PERMISSION_DENIED]: 'permission_denied',
  [FileErrorKind.OUTSIDE_SANDBOX]: 'outside_sandbox',
  [FileErrorKind.NOT_REGULAR_FILE]: 'not_regular_file',
  [FileErrorKind.TIMED_OUT]: 'timed_out',
  [FileErrorKind.FAILED]: 'failed',
};

const FILE_KINDS_BY_NAME = new Map(
  Object.entries(FILE_KIND_NAMES)
    .filter(([kind]) => Number(kind) !== FileErrorKind.UNSPECIFIED)
    .map(([kind, name]) => [name, Number(kind) as FileErrorKind]),
);

export type LegacyDetail =
  | { kind: 'file'; detail: FileErrorDetail }
  | { kind: 'process-not-found'; detail: ProcessNotFoundDetail }
  | { kind: 'port-not-listening'; detail: PortNotListeningDetail }
  | { kind: 'vm-exited'; detail: VMExitedDetail };

/** Agent side: the old headers for the detail `ce` carries (older gateways read only these). */
export function setLegacyHeaders(ce: ConnectError, detail: LegacyDetail): ConnectError {
  switch (detail.kind) {
    case 'file':
      ce.metadata.set(FILE, FILE_KIND_NAMES[detail.detail.kind]);
      break;
    case 'process-not-found':
      ce.metadata.set(
        PROCESS,
        detail.detail.reason === ProcessNotFoundReason.FORGOTTEN ? 'forgotten' : 'not_found',
      );
      ce.metadata.set(PROCESS_IDS, detail.detail.knownProcessIds.join(','));
      break;
    case 'port-not-listening':
      ce.metadata.set(PORT, 'not_listening');
      break;
    case 'vm-exited':
      ce.metadata.set(VM_STATE, 'exited');
      break;
  }
  return ce;
}

/** Client side: what an older agent's headers said, as the detail a current agent would send. */
export function detailFromLegacyHeaders(ce: ConnectError): LegacyDetail | undefined {
  const file = ce.metadata.get(FILE);
  if (file) {
    const kind = FILE_KINDS_BY_NAME.get(file) ?? FileErrorKind.FAILED;
    return { kind: 'file', detail: create(FileErrorDetailSchema, { kind, path: '' }) };
  }
  const proc = ce.metadata.get(PROCESS);
  if (proc) {
    return {
      kind: 'process-not-found',
      detail: create(ProcessNotFoundDetailSchema, {
        reason: proc === 'forgotten' ? ProcessNotFoundReason.FORGOTTEN : ProcessNotFoundReason.NOT_FOUND,
        knownProcessIds: (ce.metadata.get(PROCESS_IDS) ?? '').split(',').filter(Boolean),
      }),
    };
  }
  if (ce.metadata.get(PORT) === 'not_listening') {
    return { kind: 'port-not-listening', detail: create(PortNotListeningDetailSchema, { port: 0 }) };
  }
  if (ce.metadata.get(VM_STATE) === 'exited') {
    return { kind: 'vm-exited', detail: create(VMExitedDetailSchema, { vmId: '' }) };
  }
  return undefined;
}
