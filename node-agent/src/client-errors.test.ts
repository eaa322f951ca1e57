import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { classifyNodeAgentError } from './client-errors.ts';
import {
  FileErrorDetailSchema,
  FileErrorKind,
  ImageErrorDetailSchema,
  ProcessNotFoundDetailSchema,
  ProcessNotFoundReason,
  VMSuspendedDetailSchema,
} from './gen/waggle/nodeagent/v1/node_agent_pb.js';

// The round trip over the wire (agent edge → client) is in api/connect-errors.test.ts.
describe('classifyNodeAgentError', () => {
  it('calls the failures that say nothing about the VM transient', () => {
    for (const code of [Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.Aborted]) {
      expect(classifyNodeAgentError(new ConnectError('x', code)).kind, Code[code]).toBe('transient');
    }
  });

  it('reads NotFound without a detail as the VM, and the other codes by what they mean', () => {
    const vm = classifyNodeAgentError(new ConnectError('no VM "a" on this node', Code.NotFound));
    expect(vm).toMatchObject({ kind: 'vm-not-found', message: 'no VM "a" on this node' });
    expect(vm.error.code).toBe(Code.NotFound);
    expect(classifyNodeAgentError(new ConnectError('full', Code.ResourceExhausted)).kind).toBe(
      'resource-exhausted',
    );
    expect(classifyNodeAgentError(new ConnectError('bad', Code.InvalidArgument)).kind).toBe(
      'invalid-argument',
    );
    for (const code of [Code.AlreadyExists, Code.Internal, Code.PermissionDenied, Code.FailedPrecondition]) {
      expect(classifyNodeAgentError(new ConnectError('x', code)).kind, Code[code]).toBe('other');
    }
  });

  it('lets a typed detail decide over the code (NotFound about a file or a process is not the VM)', () => {
    const file = classifyNodeAgentError(
      new ConnectError('/home/sandbox/x does not exist', Code.NotFound, undefined, [
        { desc: FileErrorDetailSchema, value: { kind: FileErrorKind.NOT_FOUND, path: '/home/sandbox/x' } },
      ]),
    );
    expect(file.kind).toBe('file');
    expect(file.kind === 'file' && file.detail).toMatchObject({
      kind: FileErrorKind.NOT_FOUND,
      path: '/home/sandbox/x',
    });
    const proc = classifyNodeAgentError(
      new ConnectError('no background process "p"', Code.NotFound, undefined, [
        {
          desc: ProcessNotFoundDetailSchema,
          value: { reason: ProcessNotFoundReason.FORGOTTEN, knownProcessIds: ['q'] },
        },
      ]),
    );
    expect(proc.kind).toBe('process-not-found');
    expect(proc.kind === 'process-not-found' && proc.detail.knownProcessIds).toEqual(['q']);
    // An image the registry does not have is not a missing VM; an unreachable registry is transient.
    const image = (code: Code, reason: string) =>
      classifyNodeAgentError(
        new ConnectError(`image "r.test/a:1" ${reason}`, code, undefined, [
          { desc: ImageErrorDetailSchema, value: { reason, image: 'r.test/a:1' } },
        ]),
      );
    const missing = image(Code.NotFound, 'not-found');
    expect(missing.kind).toBe('image');
    expect(missing.kind === 'image' && missing.detail).toMatchObject({
      reason: 'not-found',
      image: 'r.test/a:1',
    });
    expect(image(Code.FailedPrecondition, 'missing-shell').kind).toBe('image');
    expect(image(Code.Unavailable, 'unreachable').kind).toBe('transient');
  });

  it('reads a suspended VM from its detail, and from the words of an agent from before the detail', () => {
    const typed = new ConnectError('whatever it says', Code.FailedPrecondition, undefined, [
      { desc: VMSuspendedDetailSchema, value: { vmId: 'a' } },
    ]);
    expect(classifyNodeAgentError(typed).kind).toBe('vm-suspended');
    const legacy = new ConnectError('VM a is suspended; resume it (ResumeVM) first', Code.FailedPrecondition);
    expect(classifyNodeAgentError(legacy).kind).toBe('vm-suspended');
    // The words alone, under another code or inside other text, are not the signal.
    expect(classifyNodeAgentError(new ConnectError('VM a is suspended; x', Code.Internal)).kind).toBe(
      'other',
    );
    expect(
      classifyNodeAgentError(new ConnectError('cat: file is suspended; ok', Code.FailedPrecondition)).kind,
    ).toBe('other');
  });

  it('turns anything that is not a Connect error into other (Unknown), keeping its message', () => {
    const f = classifyNodeAgentError(new Error('boom'));
    expect(f).toMatchObject({ kind: 'other', message: 'boom' });
    expect(f.error.code).toBe(Code.Unknown);
  });
});
