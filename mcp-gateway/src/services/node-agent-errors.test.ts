import {
  Code,
  ConnectError,
  FileErrorDetailSchema,
  FileErrorKind,
  ProcessNotFoundDetailSchema,
  ProcessNotFoundReason,
  VMExitedDetailSchema,
  VMSuspendedDetailSchema,
} from '@waggle/node-agent/client';
import { describe, expect, it } from 'vitest';
import { ProcessLimitError, UserError } from '../errors.ts';
import { agentCallError } from './node-agent-errors.ts';

const fileError = (kind: FileErrorKind, message: string, code = Code.FailedPrecondition) =>
  new ConnectError(message, code, undefined, [{ desc: FileErrorDetailSchema, value: { kind, path: '/p' } }]);

const asUser = (err: unknown): UserError => {
  expect(err).toBeInstanceOf(UserError);
  return err as UserError;
};

describe('agentCallError (node-agent failures as gateway errors)', () => {
  it('turns a file detail into file_<kind> with a hint where one helps', () => {
    const missing = asUser(
      agentCallError(fileError(FileErrorKind.NOT_FOUND, '/p does not exist', Code.NotFound), { envId: 'e' }),
    );
    expect(missing.code).toBe('file_not_found');
    expect(missing.message).toBe('/p does not exist. Use list_files to see what exists.');
    const big = asUser(agentCallError(fileError(FileErrorKind.TOO_LARGE, '/p is 20 bytes'), { envId: 'e' }));
    expect(big).toMatchObject({
      code: 'file_too_large',
      message: '/p is 20 bytes. Read or write a smaller file, or split it.',
    });
    const link = asUser(
      agentCallError(fileError(FileErrorKind.OUTSIDE_SANDBOX, 'leads outside'), { envId: 'e' }),
    );
    expect(link).toMatchObject({ code: 'file_outside_sandbox', message: 'leads outside.' });
  });

  it('turns a VM suspended under the call into a user error that says to call again', () => {
    const suspended = asUser(
      agentCallError(
        new ConnectError('the VM is suspended', Code.FailedPrecondition, undefined, [
          { desc: VMSuspendedDetailSchema, value: { vmId: 'uid-1' } },
        ]),
        { envId: 'e' },
      ),
    );
    expect(suspended.code).toBe('environment_not_running');
    expect(suspended.message).toMatch(
      /^environment "e" is Suspended, not Running \(it was suspended .*call again/,
    );
    // Another FailedPrecondition stays an internal fault.
    const other = new ConnectError('something else', Code.FailedPrecondition);
    expect(agentCallError(other, { envId: 'e' })).toBe(other);
  });

  it('tells a missing process (with its reason) and an exited VM from a missing VM', () => {
    const forgotten = new ConnectError('gone', Code.NotFound, undefined, [
      {
        desc: ProcessNotFoundDetailSchema,
        value: { reason: ProcessNotFoundReason.FORGOTTEN, knownProcessIds: ['p2'] },
      },
    ]);
    const proc = asUser(agentCallError(forgotten, { envId: 'e', processId: 'p1' }));
    expect(proc.code).toBe('process_not_found');
    expect(proc.message).toMatch(/process "p1" of environment "e" has ended and was forgotten/);
    const vm = asUser(agentCallError(new ConnectError('no VM', Code.NotFound), { envId: 'e' }));
    expect(vm).toMatchObject({ code: 'environment_not_running' });
    expect(vm.message).toMatch(/its VM is gone from the node/);
    const exited = new ConnectError(
      'VM v has exited: QEMU killed\nconsole tail',
      Code.FailedPrecondition,
      undefined,
      [{ desc: VMExitedDetailSchema, value: { vmId: 'v' } }],
    );
    const e = asUser(agentCallError(exited, { envId: 'e' }));
    expect(e.message).toMatch(/\(VM v has exited: QEMU killed\)/);
    expect(e.message).not.toMatch(/console tail/);
  });

  it('reads ResourceExhausted as busy, or as the process limit when starting a process', () => {
    const full = new ConnectError(
      '16 background processes already run in this VM, the most at once; stop one with KillProcess (running: a, b)',
      Code.ResourceExhausted,
    );
    expect(asUser(agentCallError(full, { envId: 'e' })).code).toBe('busy');
    const limit = agentCallError(full, { envId: 'e', startingProcess: true });
    expect(limit).toBeInstanceOf(ProcessLimitError);
    expect((limit as Error).message).toMatch(/16 already run, the most at once \(running: a, b\)/);
  });

  it('says an unreachable node is unreachable, and leaves anything else an internal fault', () => {
    const down = asUser(
      agentCallError(new ConnectError('connect ECONNREFUSED', Code.Unavailable), { envId: 'e', path: '/x' }),
    );
    expect(down.message).toMatch(/is unreachable.*the node did not answer while accessing \/x/);
    const boot = new ConnectError('the guest did not come up', Code.Internal);
    expect(agentCallError(boot, { envId: 'e' })).toBe(boot);
  });
});
