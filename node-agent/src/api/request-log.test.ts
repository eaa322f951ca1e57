import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent.ts';
import { createNodeAgentClient, ENV_ID_HEADER, Runtime, withEnvId } from '../client.ts';
import { ResourceExhaustedError, VMNotFoundError } from '../errors.ts';
import { createLogger, EnvIds } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { startServers } from '../server.ts';
import { readVersion } from '../version.ts';

// The agent's own servers with a stand-in Agent: what its logs say about each call, and /version.
const lines: Array<Record<string, unknown>> = [];
const envIds = new EnvIds();
const log = createLogger({
  level: 'debug',
  envIds,
  destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
});
const agent = {
  log,
  vms: { list: () => [] },
  async killProcess(vmId: string) {
    if (vmId === 'gone') throw new VMNotFoundError(vmId);
    return { wasRunning: false };
  },
  async createVM(spec: { vmId: string }) {
    log.child({ vmId: spec.vmId }).info('vm booting');
    throw new ResourceExhaustedError('the node is full');
  },
  async destroyVM(vmId: string) {
    log.child({ vmId }).info('vm destroyed');
    return true;
  },
} as unknown as Agent;

let servers: Awaited<ReturnType<typeof startServers>>;
beforeAll(async () => {
  servers = await startServers({
    agent,
    metrics: createMetrics(),
    listen: '127.0.0.1:0',
    opsListen: '127.0.0.1:0',
    isReady: () => true,
    version: readVersion(),
    envIds,
  });
});
afterAll(() => servers?.close());

const since = (n: number) => lines.slice(n);

describe('node-agent request logs', () => {
  it('give each call the caller’s environment id, and the agent’s lines about its VM too', async () => {
    const client = withEnvId(createNodeAgentClient(servers.apiUrl), 'team-a/env-1');
    const n = lines.length;
    await client.destroyVM({ vmId: 'uid-1' });
    const destroyed = since(n).find((l) => l.msg === 'vm destroyed');
    expect(destroyed).toMatchObject({ vmId: 'uid-1', envId: 'team-a/env-1' });
    expect(since(n).find((l) => l.msg === 'rpc served')).toMatchObject({
      rpc: 'DestroyVM',
      vmId: 'uid-1',
      envId: 'team-a/env-1',
    });
    // Outside any call: a VM the agent learned the environment of.
    await client.killProcess({ vmId: 'uid-2', processId: 'p' });
    const m = lines.length;
    log.warn({ vmId: 'uid-2' }, 'vm exited');
    expect(since(m)[0]).toMatchObject({ vmId: 'uid-2', envId: 'team-a/env-1' });
  });

  it('learn the environment of a VM from CreateVM (its spec names the VM)', async () => {
    const client = withEnvId(createNodeAgentClient(servers.apiUrl), 'team-a/env-3');
    const n = lines.length;
    await expect(client.createVM({ spec: { vmId: 'uid-3b', runtime: Runtime.PYTHON } })).rejects.toThrow();
    expect(since(n).find((l) => l.msg === 'vm booting')).toMatchObject({
      vmId: 'uid-3b',
      envId: 'team-a/env-3',
    });
    expect(since(n).find((l) => l.msg === 'rpc failed')).toMatchObject({
      rpc: 'CreateVM',
      vmId: 'uid-3b',
      envId: 'team-a/env-3',
      code: 'ResourceExhausted',
    });
  });

  it('log a failed call with its code', async () => {
    const client = withEnvId(createNodeAgentClient(servers.apiUrl), 'team-a/env-2');
    const n = lines.length;
    await expect(client.killProcess({ vmId: 'gone', processId: 'p' })).rejects.toThrow();
    expect(since(n).find((l) => l.msg === 'rpc failed')).toMatchObject({
      rpc: 'KillProcess',
      vmId: 'gone',
      envId: 'team-a/env-2',
      code: 'NotFound',
    });
  });

  it('leave out an environment id that is not in the shape of one', async () => {
    const client = createNodeAgentClient(servers.apiUrl);
    const n = lines.length;
    await client.killProcess(
      { vmId: 'uid-3', processId: 'p' },
      { headers: { [ENV_ID_HEADER]: `team/${'x'.repeat(300)}` } },
    );
    await client.killProcess({ vmId: 'uid-3', processId: 'p' }, { headers: { [ENV_ID_HEADER]: 'Team/"x"' } });
    const served = since(n).filter((l) => l.msg === 'rpc served');
    expect(served).toHaveLength(2);
    for (const l of served) expect(l).not.toHaveProperty('envId');
    expect(envIds.get('uid-3')).toBeUndefined();
  });
});

describe('node-agent /version', () => {
  it('answers the component and its package version on the ops port', async () => {
    const r = await fetch(new URL('/version', servers.opsUrl));
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ component: 'node-agent', version: readVersion().version });
    expect(readVersion().version).toMatch(/^\d+\.\d+\.\d+/);
  });
});
