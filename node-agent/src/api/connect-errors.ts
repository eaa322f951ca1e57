import { Code, ConnectError } from '@connectrpc/connect';
import {
  GuestFileError,
  GuestPortClosedError,
  GuestUnavailableError,
  InvalidArgumentError,
  ProcessNotFoundError,
  ResourceExhaustedError,
  VMBootError,
  VMConflictError,
  VMExitedError,
  VMNotFoundError,
} from '../errors.ts';

/** Translates a domain error into a Connect error (the only place protocol codes are chosen). */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = err as Error;
  if (e instanceof InvalidArgumentError) return new ConnectError(e.message, Code.InvalidArgument);
  if (e instanceof VMNotFoundError) return new ConnectError(e.message, Code.NotFound);
  if (e instanceof ProcessNotFoundError) {
    // NotFound alone means "no such VM" to callers: the header says it is the process.
    const ce = new ConnectError(e.message, Code.NotFound);
    ce.metadata.set('waggle-process-error', e.reason);
    ce.metadata.set('waggle-process-ids', e.knownIds.join(','));
    return ce;
  }
  if (e instanceof VMConflictError) return new ConnectError(e.message, Code.AlreadyExists);
  if (e instanceof ResourceExhaustedError) return new ConnectError(e.message, Code.ResourceExhausted);
  if (e instanceof GuestUnavailableError) return new ConnectError(e.message, Code.Unavailable);
  if (e instanceof VMBootError) return new ConnectError(e.message, Code.Internal);
  if (e instanceof GuestPortClosedError) {
    const ce = new ConnectError(e.message, Code.FailedPrecondition);
    ce.metadata.set('waggle-port-error', 'not_listening');
    return ce;
  }
  if (e instanceof VMExitedError) {
    const ce = new ConnectError(e.message, Code.FailedPrecondition);
    ce.metadata.set('waggle-vm-state', 'exited');
    return ce;
  }
  if (e instanceof GuestFileError) {
    const code =
      e.code === 'not_found'
        ? Code.NotFound
        : e.code === 'permission_denied'
          ? Code.PermissionDenied
          : e.code === 'failed'
            ? Code.Internal
            : Code.FailedPrecondition;
    const ce = new ConnectError(e.message, code);
    ce.metadata.set('waggle-file-error', e.code);
    return ce;
  }
  return new ConnectError(e?.message ?? String(err), Code.Internal);
}

/** Wraps a handler so domain errors leave as Connect errors. */
export function edge<Req, Res>(fn: (req: Req, ctx: { signal: AbortSignal }) => Promise<Res>) {
  return async (req: Req, ctx: { signal: AbortSignal }): Promise<Res> => {
    try {
      return await fn(req, ctx);
    } catch (err) {
      throw toConnectError(err);
    }
  };
}
