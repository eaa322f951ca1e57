import { Code, ConnectError, createContextValues } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { authorizeClients, clientIdentity, isAllowed } from './client-authz.ts';

const call = (identity: string | undefined, method: string) => {
  const contextValues = createContextValues();
  if (identity !== undefined) contextValues.set(clientIdentity, identity);
  const next = async () => 'handled';
  return authorizeClients(next as never)({ method: { name: method }, contextValues } as never);
};

describe('node-agent client authorization', () => {
  it('lets the operator manage VMs and the gateway use them, and nothing more', () => {
    expect(isAllowed('waggle-operator', 'CreateVM')).toBe(true);
    expect(isAllowed('waggle-operator', 'DestroyVM')).toBe(true);
    expect(isAllowed('waggle-operator', 'Exec')).toBe(false);
    expect(isAllowed('waggle-operator', 'ReadFile')).toBe(false);
    expect(isAllowed('waggle-gateway', 'Exec')).toBe(true);
    expect(isAllowed('waggle-gateway', 'WriteFile')).toBe(true);
    expect(isAllowed('waggle-gateway', 'CreateVM')).toBe(false);
    expect(isAllowed('waggle-gateway', 'DestroyVM')).toBe(false);
    expect(isAllowed('waggle-gateway', 'ListVMs')).toBe(false);
  });

  it('denies unknown and empty identities; cleartext (no identity) is not checked', () => {
    expect(isAllowed('waggle-node-agent', 'GetNodeInfo')).toBe(false);
    expect(isAllowed('', 'GetNodeInfo')).toBe(false);
    expect(isAllowed('constructor', 'GetNodeInfo')).toBe(false);
    expect(isAllowed(undefined, 'CreateVM')).toBe(true);
  });

  it('answers PermissionDenied naming the client and the method, before the handler runs', async () => {
    await expect(call('waggle-operator', 'CreateVM')).resolves.toBe('handled');
    const err = await call('waggle-gateway', 'DestroyVM').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.PermissionDenied);
    expect((err as ConnectError).rawMessage).toBe('client "waggle-gateway" may not call DestroyVM');
    const stranger = (await call('intruder', 'GetVM').catch((e: unknown) => e)) as ConnectError;
    expect(stranger.rawMessage).toMatch(
      /client "intruder" may not call GetVM \(known clients: waggle-operator, waggle-gateway\)/,
    );
  });
});
