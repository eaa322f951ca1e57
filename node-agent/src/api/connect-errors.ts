import { create } from '@bufbuild/protobuf';
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
  VMSuspendedError,
} from '../errors.ts';
import {
  FileErrorDetailSchema,
  FileErrorKind,
  ImageErrorDetailSchema,
  PortNotListeningDetailSchema,
  ProcessNotFoundDetailSchema,
  ProcessNotFoundReason,
  VMExitedDetailSchema,
  VMSuspendedDetailSchema,
} from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import { ImageError, type ImageErrorReason } from '../images/image-errors.ts';
import { setLegacyHeaders } from '../legacy-error-headers.ts';

/** The wire kind of each file error (FileErrorDetail.kind). */
const FILE_ERROR_KIND: Record<GuestFileError['code'], FileErrorKind> = {
  not_found: FileErrorKind.NOT_FOUND,
  is_directory: FileErrorKind.IS_DIRECTORY,
  not_directory: FileErrorKind.NOT_DIRECTORY,
  too_large: FileErrorKind.TOO_LARGE,
  permission_denied: FileErrorKind.PERMISSION_DENIED,
  outside_sandbox: FileErrorKind.OUTSIDE_SANDBOX,
  not_regular_file: FileErrorKind.NOT_REGULAR_FILE,
  timed_out: FileErrorKind.TIMED_OUT,
  failed: FileErrorKind.FAILED,
};

/** The code of each image failure: the caller's mistake, the registry's answer, or the node's fault. */
const IMAGE_ERROR_CODE: Record<ImageErrorReason, Code> = {
  'invalid-reference': Code.InvalidArgument,
  'not-allowed': Code.PermissionDenied,
  unauthorized: Code.PermissionDenied,
  'not-found': Code.NotFound,
  unreachable: Code.Unavailable,
  'not-an-image': Code.FailedPrecondition,
  'wrong-architecture': Code.FailedPrecondition,
  'too-large': Code.FailedPrecondition,
  'missing-shell': Code.FailedPrecondition,
  'missing-interpreter': Code.FailedPrecondition,
  'node-error': Code.Internal,
};

const PROCESS_NOT_FOUND_REASON: Record<ProcessNotFoundError['reason'], ProcessNotFoundReason> = {
  not_found: ProcessNotFoundReason.NOT_FOUND,
  forgotten: ProcessNotFoundReason.FORGOTTEN,
};

/**
 * Translates a domain error into a Connect error (the only place protocol codes are chosen).
 * Where a code alone is ambiguous (NotFound: the VM or a process? FailedPrecondition: which?)
 * the error carries a typed detail from the proto.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = err as Error;
  if (e instanceof InvalidArgumentError) return new ConnectError(e.message, Code.InvalidArgument);
  if (e instanceof VMNotFoundError) return new ConnectError(e.message, Code.NotFound);
  if (e instanceof ProcessNotFoundError) {
    const value = { reason: PROCESS_NOT_FOUND_REASON[e.reason], knownProcessIds: e.knownIds };
    return setLegacyHeaders(
      new ConnectError(e.message, Code.NotFound, undefined, [{ desc: ProcessNotFoundDetailSchema, value }]),
      { kind: 'process-not-found', detail: create(ProcessNotFoundDetailSchema, value) },
    );
  }
  if (e instanceof VMConflictError) return new ConnectError(e.message, Code.AlreadyExists);
  if (e instanceof ResourceExhaustedError) return new ConnectError(e.message, Code.ResourceExhausted);
  if (e instanceof GuestUnavailableError) return new ConnectError(e.message, Code.Unavailable);
  if (e instanceof VMBootError) return new ConnectError(e.message, Code.Internal);
  if (e instanceof GuestPortClosedError) {
    const value = { port: e.port };
    return setLegacyHeaders(
      new ConnectError(e.message, Code.FailedPrecondition, undefined, [
        { desc: PortNotListeningDetailSchema, value },
      ]),
      { kind: 'port-not-listening', detail: create(PortNotListeningDetailSchema, value) },
    );
  }
  if (e instanceof VMExitedError) {
    const value = { vmId: e.vmId };
    return setLegacyHeaders(
      new ConnectError(e.message, Code.FailedPrecondition, undefined, [
        { desc: VMExitedDetailSchema, value },
      ]),
      { kind: 'vm-exited', detail: create(VMExitedDetailSchema, value) },
    );
  }
  if (e instanceof VMSuspendedError)
    return new ConnectError(e.message, Code.FailedPrecondition, undefined, [
      { desc: VMSuspendedDetailSchema, value: { vmId: e.vmId } },
    ]);
  if (e instanceof GuestFileError) return fileConnectError(e);
  if (e instanceof ImageError) {
    return new ConnectError(e.message, IMAGE_ERROR_CODE[e.reason], undefined, [
      { desc: ImageErrorDetailSchema, value: { reason: e.reason, image: e.image } },
    ]);
  }
  return new ConnectError(e?.message ?? String(err), Code.Internal);
}

function fileConnectError(e: GuestFileError): ConnectError {
  const code =
    e.code === 'not_found'
      ? Code.NotFound
      : e.code === 'permission_denied'
        ? Code.PermissionDenied
        : e.code === 'failed'
          ? Code.Internal
          : Code.FailedPrecondition;
  const value = { kind: FILE_ERROR_KIND[e.code], path: e.path };
  return setLegacyHeaders(
    new ConnectError(e.message, code, undefined, [{ desc: FileErrorDetailSchema, value }]),
    { kind: 'file', detail: create(FileErrorDetailSchema, value) },
  );
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
