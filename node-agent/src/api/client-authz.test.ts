import { Code, ConnectError, createContextValues } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { file_waggle_nodeagent_v1_node_agent } from '../gen/waggle/nodeagent/v1/node_agent_pb.js';
import { authorizeClients, CLIENT_PERMISSIONS, clientIdentity, isAllowed } from './client-authz.ts';

/** Every RPC the generated descriptors define, over every service of the proto file. */
const RPCS = file_waggle_nodeagent_v1_node_agent.services.flatMap((s) => s.methods.map((m) => m.name));

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
    // Pulls fill the node's disk and carry registry credentials: the operator's alone.
    expect(isAllowed('waggle-operator', 'PullImage')).toBe(true);
    expect(isAllowed('waggle-gateway', 'PullImage')).toBe(false);
  });

  it('lets some client call every RPC of the proto (a new RPC needs its entry, or mTLS denies it)', () => {
    expect(RPCS.length).toBeGreaterThan(0);
    const callable = new Set([...CLIENT_PERMISSIONS.values()].flatMap((methods) => [...methods]));
    expect(RPCS.filter((rpc) => !callable.has(rpc))).toEqual([]);
  });

  it('names only RPCs that exist (a renamed or removed RPC leaves no stale entry)', () => {
    const known = new Set(RPCS);
    for (const [client, methods] of CLIENT_PERMISSIONS) {
      expect(
        [...methods].filter((m) => !known.has(m)),
        client,
      ).toEqual([]);
    }
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
