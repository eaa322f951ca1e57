/**
 * Domain errors of the gateway. A `UserError` is a mistake or a state the caller can act on; the
 * MCP edge turns it into a tool result with `isError: true` and this message. Anything else is
 * an internal fault and becomes a JSON-RPC error.
 */
export class UserError extends Error {
  override name = 'UserError';
  /** Stable machine-readable code, also put into the result's structured error. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export class EnvironmentNotFoundError extends UserError {
  constructor(id: string) {
    super(
      'environment_not_found',
      `environment "${id}" does not exist (or belongs to someone else). ` +
        'Call list_environments to see yours, or create_environment to make a new one.',
    );
  }
}

export class EnvironmentNotRunningError extends UserError {
  constructor(id: string, phase: string, detail?: string) {
    super(
      'environment_not_running',
      `environment "${id}" is ${phase}, not Running${detail ? ` (${detail})` : ''}; ` +
        (phase === 'Failed' || phase === 'Terminating'
          ? 'destroy it and create a new one.'
          : 'wait a few seconds and try again.'),
    );
  }
}

/** A tool call found the environment suspended, and it did not resume in time. */
export class EnvironmentSuspendedError extends UserError {
  constructor(id: string, waitedMs: number, detail?: string) {
    super(
      'environment_suspended',
      `environment "${id}" is suspended and did not resume within ${waitedMs < 1_000 ? `${waitedMs} ms` : `${Math.round(waitedMs / 1000)} s`}` +
        `${detail ? `: ${detail}` : ''}. Try the call again in a moment; if it keeps failing, destroy ` +
        'the environment and create a new one.',
    );
  }
}

export class LimitReachedError extends UserError {
  constructor(limit: number) {
    super(
      'environment_limit',
      `you already have ${limit} environments, the most allowed at once; destroy one you no longer ` +
        'need (list_environments shows them) and try again.',
    );
  }
}

export class CreateFailedError extends UserError {
  constructor(message: string) {
    super('create_failed', message);
  }
}

export class InvalidRequestError extends UserError {
  constructor(message: string) {
    super('invalid_argument', message);
  }
}

export class FileError extends UserError {}

/** A background process id the environment does not know (never started there, or forgotten). */
export class ProcessNotFoundError extends UserError {
  constructor(envId: string, processId: string, reason: string, knownIds: string[]) {
    super(
      'process_not_found',
      reason === 'forgotten'
        ? `process "${processId}" of environment "${envId}" has ended and was forgotten to make room for ` +
            'newer ones (only the most recent processes are kept); run the code again with execute ' +
            'background: true if you need its output.'
        : `process "${processId}" does not exist in environment "${envId}" ` +
            (knownIds.length
              ? `(its processes: ${knownIds.join(', ')}). Use a process_id that execute with background: ` +
                'true returned for this environment.'
              : '(no background process is known there: none was started, or its node-agent restarted ' +
                'since, which forgets them). Start one with execute background: true and use the ' +
                'process_id it returns.'),
    );
  }
}

/** The environment already runs as many background processes as it may. */
export class ProcessLimitError extends UserError {
  constructor(envId: string, detail: string) {
    super(
      'process_limit',
      `environment "${envId}" cannot start another background process: ${detail}. Stop one you no ` +
        'longer need with kill_process and try again.',
    );
  }
}

/**
 * A caller could not be authenticated or is not allowed (401/403), or sent too many tokens that
 * nobody accepts (429, with the seconds to wait); the HTTP edge answers with that status.
 */
export class AuthError extends Error {
  override name = 'AuthError';
  readonly status: 401 | 403 | 429;
  readonly retryAfterSeconds: number | undefined;
  constructor(status: 401 | 403 | 429, message: string, retryAfterSeconds?: number) {
    super(message);
    this.status = status;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export class PortNotExposedError extends UserError {
  constructor(envId: string, port: number) {
    super(
      'port_not_exposed',
      `port ${port} of environment "${envId}" is not exposed; call expose_port first (unexpose_port and ` +
        'destroy_environment end a preview URL)',
    );
  }
}

export class PortNotListeningError extends UserError {
  constructor(message: string) {
    super('port_not_listening', message);
  }
}

/** The node is at a limit (e.g. open preview connections); retrying later may work. */
export class BusyError extends UserError {
  constructor(message: string) {
    super('busy', message);
  }
}
