/** Domain errors of the node-agent; translated to Connect codes only at the API edge. */
export class NodeAgentError extends Error {
  override name = 'NodeAgentError';
}

/** A request argument is invalid; the message says which and how to fix it. */
export class InvalidArgumentError extends NodeAgentError {
  override name = 'InvalidArgumentError';
}

export class VMNotFoundError extends NodeAgentError {
  override name = 'VMNotFoundError';
  constructor(vmId: string) {
    super(`no VM "${vmId}" on this node`);
  }
}

/** A VM with this id exists with a different spec (CreateVM is idempotent only for equal specs). */
export class VMConflictError extends NodeAgentError {
  override name = 'VMConflictError';
}

/** The guest did not come up; the message carries the reason and the last console lines. */
export class VMBootError extends NodeAgentError {
  override name = 'VMBootError';
}

/** The node cannot take more VMs or lacks something a VM needs (image, port). */
export class ResourceExhaustedError extends NodeAgentError {
  override name = 'ResourceExhaustedError';
}

/** The VM's QEMU is gone (killed, crashed, out of memory): nothing can run in it any more. */
export class VMExitedError extends NodeAgentError {
  override name = 'VMExitedError';
  readonly vmId: string;
  constructor(vmId: string, why: string) {
    super(`VM ${vmId} has exited: ${why}`);
    this.vmId = vmId;
  }
}

/** The VM is suspended (SuspendVM): nothing runs in it until ResumeVM. */
export class VMSuspendedError extends NodeAgentError {
  override name = 'VMSuspendedError';
  readonly vmId: string;
  constructor(vmId: string) {
    super(`VM ${vmId} is suspended; resume it (ResumeVM) first`);
    this.vmId = vmId;
  }
}

/** Talking to the guest failed (SSH/SFTP), e.g. the VM died. */
export class GuestUnavailableError extends NodeAgentError {
  override name = 'GuestUnavailableError';
}

/**
 * No background process with this id in the VM (never started there, or forgotten to make room
 * for newer ones); `knownIds` are the VM's processes, for the caller's message.
 */
export class ProcessNotFoundError extends NodeAgentError {
  override name = 'ProcessNotFoundError';
  readonly reason: 'not_found' | 'forgotten';
  readonly knownIds: string[];
  constructor(message: string, reason: ProcessNotFoundError['reason'], knownIds: string[]) {
    super(message);
    this.reason = reason;
    this.knownIds = knownIds;
  }
}

/** A file operation failed for a reason the caller can act on (missing path, directory, too large). */
export class GuestFileError extends NodeAgentError {
  override name = 'GuestFileError';
  readonly code:
    | 'not_found'
    | 'is_directory'
    | 'not_directory'
    | 'too_large'
    | 'permission_denied'
    /** The path leads (through a symbolic link) outside the directories file tools may use. */
    | 'outside_sandbox'
    /** A device, FIFO or socket: file tools only read and write regular files. */
    | 'not_regular_file'
    /** The guest did not answer a file request in time (the file session was reset). */
    | 'timed_out'
    | 'failed';
  /** The guest path the error is about (for a link leading outside: the link, not its target). */
  readonly path: string;
  constructor(code: GuestFileError['code'], path: string, message: string) {
    super(message);
    this.code = code;
    this.path = path;
  }
}

/** Nothing accepts connections on the guest port a tunnel asked for. */
export class GuestPortClosedError extends NodeAgentError {
  override name = 'GuestPortClosedError';
  readonly port: number;
  constructor(port: number, message: string) {
    super(message);
    this.port = port;
  }
}
