import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { classifyNodeAgentError } from './client-errors.ts';
import {
  FileErrorDetailSchema,
  FileErrorKind,
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
