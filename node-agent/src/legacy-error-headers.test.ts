import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { toConnectError } from './api/connect-errors.ts';
import { classifyNodeAgentError } from './client-errors.ts';
import { GuestFileError, GuestPortClosedError, ProcessNotFoundError, VMExitedError } from './errors.ts';
import { FileErrorKind, ProcessNotFoundReason } from './gen/waggle/nodeagent/v1/node_agent_pb.js';

// During a rolling upgrade an agent and a gateway of adjacent releases talk: one release keeps
// the old plain-string headers next to the typed details, both ways.
const oldAgentError = (code: Code, headers: Record<string, string>) => {
  const ce = new ConnectError('from an older agent', code);
  for (const [k, v] of Object.entries(headers)) ce.metadata.set(k, v);
  return ce;
};

describe('errors across one release of version skew', () => {
  it('a new client reads an older agent’s headers as the typed detail (a missing file is not a missing VM)', () => {
    const file = classifyNodeAgentError(oldAgentError(Code.NotFound, { 'waggle-file-error': 'not_found' }));
    expect(file).toMatchObject({ kind: 'file', detail: { kind: FileErrorKind.NOT_FOUND } });
    const outside = classifyNodeAgentError(
      oldAgentError(Code.FailedPrecondition, { 'waggle-file-error': 'outside_sandbox' }),
    );
    expect(outside).toMatchObject({ kind: 'file', detail: { kind: FileErrorKind.OUTSIDE_SANDBOX } });
    const proc = classifyNodeAgentError(
      oldAgentError(Code.NotFound, { 'waggle-process-error': 'forgotten', 'waggle-process-ids': 'p1,p2' }),
    );
    expect(proc).toMatchObject({
      kind: 'process-not-found',
      detail: { reason: ProcessNotFoundReason.FORGOTTEN, knownProcessIds: ['p1', 'p2'] },
    });
    expect(
      classifyNodeAgentError(oldAgentError(Code.FailedPrecondition, { 'waggle-port-error': 'not_listening' }))
        .kind,
    ).toBe('port-not-listening');
    expect(
      classifyNodeAgentError(oldAgentError(Code.FailedPrecondition, { 'waggle-vm-state': 'exited' })).kind,
    ).toBe('vm-exited');
    expect(classifyNodeAgentError(oldAgentError(Code.NotFound, {})).kind).toBe('vm-not-found');
  });

  it('a new agent still sends the old headers an older gateway reads', () => {
    const file = toConnectError(new GuestFileError('not_found', '/home/sandbox/x', 'no such file'));
    expect(file.metadata.get('waggle-file-error')).toBe('not_found');
    const proc = toConnectError(new ProcessNotFoundError('no process p9', 'not_found', ['p1']));
    expect([proc.metadata.get('waggle-process-error'), proc.metadata.get('waggle-process-ids')]).toEqual([
      'not_found',
      'p1',
    ]);
    expect(
      toConnectError(new GuestPortClosedError(8080, 'nothing listens')).metadata.get('waggle-port-error'),
    ).toBe('not_listening');
    expect(toConnectError(new VMExitedError('vm-1', 'killed')).metadata.get('waggle-vm-state')).toBe(
      'exited',
    );
  });
});
