import {
  type ConnectError,
  classifyNodeAgentError,
  FileErrorKind,
  ProcessNotFoundReason,
} from '@waggle/node-agent/client';
import {
  BusyError,
  EnvironmentNotRunningError,
  FileError,
  InvalidRequestError,
  PortNotListeningError,
  ProcessLimitError,
  ProcessNotFoundError,
  type UserError,
} from '../errors.ts';

/** What the failed call was about, for the caller's message. */
export interface AgentCallContext {
  /** The environment (its name). */
  envId: string;
  /** The guest path of a file call. */
  path?: string;
  /** The background process a call named. */
  processId?: string;
  /** StartProcess: a full node means the environment runs as many processes as it may. */
  startingProcess?: boolean;
}

/** The stable code suffix (`file_<suffix>`) and the hint of each file error. */
const FILE_ERRORS: Record<FileErrorKind, { code: string; hint?: string }> = {
  [FileErrorKind.UNSPECIFIED]: { code: 'failed' },
  [FileErrorKind.NOT_FOUND]: { code: 'not_found', hint: 'Use list_files to see what exists.' },
  [FileErrorKind.IS_DIRECTORY]: { code: 'is_directory' },
  [FileErrorKind.NOT_DIRECTORY]: { code: 'not_directory' },
  [FileErrorKind.TOO_LARGE]: { code: 'too_large', hint: 'Read or write a smaller file, or split it.' },
  [FileErrorKind.PERMISSION_DENIED]: { code: 'permission_denied' },
  [FileErrorKind.OUTSIDE_SANDBOX]: { code: 'outside_sandbox' },
  [FileErrorKind.NOT_REGULAR_FILE]: { code: 'not_regular_file' },
  [FileErrorKind.TIMED_OUT]: { code: 'timed_out' },
  [FileErrorKind.FAILED]: { code: 'failed' },
};

/**
 * The gateway's one translation of a failed node-agent call into a domain error: a `UserError`
 * the caller can act on, or the Connect error itself (an internal fault) when it is none of those.
 */
export function agentCallError(err: unknown, at: AgentCallContext): UserError | ConnectError {
  const f = classifyNodeAgentError(err);
  switch (f.kind) {
    case 'file': {
      const { code, hint } = FILE_ERRORS[f.detail.kind];
      return new FileError(`file_${code}`, `${f.message}.${hint ? ` ${hint}` : ''}`);
    }
    case 'port-not-listening':
      return new PortNotListeningError(f.message);
    case 'process-not-found':
      return new ProcessNotFoundError(
        at.envId,
        at.processId ?? '',
        f.detail.reason === ProcessNotFoundReason.FORGOTTEN ? 'forgotten' : 'not_found',
        f.detail.knownProcessIds,
      );
    case 'vm-not-found':
      return new EnvironmentNotRunningError(at.envId, 'Failed', 'its VM is gone from the node');
    case 'vm-exited':
      return new EnvironmentNotRunningError(at.envId, 'Failed', firstLine(f.message));
    case 'invalid-argument':
      return new InvalidRequestError(f.message);
    case 'transient':
      return new EnvironmentNotRunningError(
        at.envId,
        'unreachable',
        `the node did not answer${at.path ? ` while accessing ${at.path}` : ''}: ${f.message}`,
      );
    case 'resource-exhausted':
      return at.startingProcess ? processLimit(at.envId, f.message) : new BusyError(f.message);
    case 'vm-suspended':
      // The VM was suspended (idle) as this call reached it: the agent refuses until ResumeVM.
      // A call that finds the environment Suspended waits for the resume instead (resolveRunning);
      // this is the narrow race at the idle deadline, so the next call resumes it.
      return new EnvironmentNotRunningError(
        at.envId,
        'Suspended',
        'it was suspended for inactivity just as this call reached it; call again and it resumes',
      );
    case 'image': // only CreateVM and PullImage (the operator's) fail for an image
    case 'other':
      return f.error;
  }
}

/** "16 background processes already run in this VM, the most at once; … (running: a, b)" */
function processLimit(envId: string, message: string): ProcessLimitError {
  const m = /^(\d+) background processes already run[^;]*;.*\(running: (.*)\)$/.exec(message);
  return new ProcessLimitError(
    envId,
    m ? `${m[1]} already run, the most at once (running: ${m[2]})` : message,
  );
}

/** The first line of a node-agent message (the rest is console output for the operator). */
const firstLine = (m: string) => m.split('\n')[0] ?? m;
