import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureGuestImages, waitFor } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent.ts';
import {
  createNodeAgentClient,
  Egress,
  type GetNodeInfoResponse,
  type NodeAgentClient,
  Runtime,
  VMOrigin,
} from '../src/client.ts';
import { createMetrics } from '../src/metrics.ts';
import { startServers } from '../src/server.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import type { VMNetworks } from '../src/vm/network/vm-network.ts';
import type { GuestImages, VMManager } from '../src/vm/vm-manager.ts';
import { testAgent, testManager, testNetworks } from './vm-fixtures.ts';

// Warm pools through the real API edge: an in-process Agent served by its ConnectRPC server,
// real TCG VMs (small: 1 vCPU, 256 MiB). Room for three VMs: two warm plus one environment, or
// two outdated warm VMs plus the one that replaces the first of them.

const POOL = 'team-a/py';
const T1 = { vmId: '', runtime: Runtime.PYTHON, cpus: 1, memoryMib: 256, diskMib: 1024, egress: Egress.ALL };
const T2 = { ...T1, diskMib: 1536 };
const capacity = { vms: 3, cpus: 3, memoryMiB: 1024 };

let stateDir = '';
let images: GuestImages;
let networks: VMNetworks;
let tscKHz = 0;
let vms: VMManager;
let agent: Agent;
let servers: Awaited<ReturnType<typeof startServers>> | undefined;
let client: NodeAgentClient;

/** A manager and agent on the test's state dir (adopting what runs there), served over Connect. */
async function startAgent(): Promise<void> {
  vms = testManager({ stateDir, images, networks, tscKHz });
  await vms.adopt();
  agent = testAgent(vms, 'warm-pools-test', { capacity });
  agent.pools.start();
  servers = await startServers({
    agent,
    metrics: createMetrics(),
    listen: '127.0.0.1:0',
    opsListen: '127.0.0.1:0',
    isReady: () => true,
  });
  client = createNodeAgentClient(servers.apiUrl);
}

async function stopAgent(): Promise<void> {
  await servers?.close();
  agent.close();
  vms.close();
}

const pool = async () => (await client.getNodeInfo({})).pools.find((p) => p.name === POOL);

async function exec(vmId: string, code: string): Promise<string> {
  let out = '';
  for await (const msg of client.exec({ vmId, code, language: 'python', timeoutMs: 30_000 })) {
    if (msg.event.case === 'stdout') out += Buffer.from(msg.event.value).toString();
  }
  return out;
}

/** GetNodeInfo every 150 ms until `done`; returns every answer (to check what held throughout). */
async function watchUntil(
  done: (info: GetNodeInfoResponse) => boolean,
  timeoutMs: number,
): Promise<GetNodeInfoResponse[]> {
  const seen: GetNodeInfoResponse[] = [];
  await waitFor(
    async () => {
      const info = await client.getNodeInfo({});
      seen.push(info);
      return info;
    },
    done,
    'warm pool state',
    { timeoutMs, intervalMs: 150, describe: (i) => i.pools },
  );
  return seen;
}

beforeAll(async () => {
  images = await ensureGuestImages(['python']);
  tscKHz = await readHostTscKHz();
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-warm-pools-test-'));
  networks = await testNetworks('10.253.241.0/24');
  await startAgent();
}, 900_000);

afterAll(async () => {
  await stopAgent().catch(() => undefined);
  if (vms) for (const vm of vms.list()) await vms.destroyInstance(vm.instanceId);
  await networks?.removeHostTable();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

describe('warm pools (real agent API, real VMs)', () => {
  it('fills the pool one boot at a time, binds a warm VM in well under a second, and refills', {
    timeout: 300_000,
  }, async () => {
    const set = await client.setWarmPools({ pools: [{ name: POOL, template: T1, replicas: 2 }] });
    expect(set.pools).toEqual([
      expect.objectContaining({
        name: POOL,
        replicas: 2,
        templateHash: expect.stringMatching(/^[0-9a-f]{16}$/),
      }),
    ]);
    const filling = await watchUntil((i) => i.pools[0]?.ready === 2, 240_000);
    expect(Math.max(...filling.map((i) => i.pools[0]?.booting ?? 0))).toBe(1);
    const full = filling.at(-1) as GetNodeInfoResponse;
    expect(full).toMatchObject({ warmVms: 2, allocatedVms: 2, allocatedMemoryMib: 512 });
    expect((await client.listVMs({})).vms).toEqual([]); // warm VMs have no owner to list

    const t0 = performance.now();
    const { vm } = await client.createVM({ spec: { ...T1, vmId: 'env-1' }, pool: POOL });
    const bindMs = performance.now() - t0;
    process.stderr.write(`warm-pools.test: warm create ${Math.round(bindMs)} ms (tcg)\n`);
    // A bind makes no guest round trip (a record write): well under a second, even under TCG.
    expect(bindMs).toBeLessThan(1_000);
    expect(vm).toMatchObject({
      origin: VMOrigin.VM_ORIGIN_WARM,
      pool: POOL,
      spec: { vmId: 'env-1', memoryMib: 256 },
    });
    expect(await exec('env-1', 'print(6 * 7)')).toBe('42\n');

    // A replacement boots for the bound VM; the environment's VM counts as allocated.
    const refilled = await watchUntil((i) => i.pools[0]?.ready === 2, 240_000);
    expect(refilled.at(-1)).toMatchObject({ warmVms: 2, allocatedVms: 3 });
    expect((await client.listVMs({})).vms.map((v) => v.spec?.vmId)).toEqual(['env-1']);
  });

  it('replaces outdated warm VMs one at a time after a template change (never fewer than 2 bindable)', {
    timeout: 300_000,
  }, async () => {
    await client.destroyVM({ vmId: 'env-1' }); // room for one VM more than the pool
    const set = await client.setWarmPools({ pools: [{ name: POOL, template: T2, replicas: 2 }] });
    expect(set.pools[0]).toMatchObject({ outdated: 2, ready: 0 });
    const seen = await watchUntil((i) => i.pools[0]?.ready === 2 && i.pools[0]?.outdated === 0, 240_000);
    for (const info of seen) {
      const p = info.pools[0];
      expect((p?.ready ?? 0) + (p?.outdated ?? 0)).toBeGreaterThanOrEqual(2);
      expect(p?.booting ?? 0).toBeLessThanOrEqual(1);
      expect(info.allocatedVms).toBeLessThanOrEqual(capacity.vms);
    }
    expect(seen.some((i) => i.pools[0]?.ready === 1 && i.pools[0]?.outdated === 1)).toBe(true);
    await agent.pools.idle(); // the last outdated VM is being destroyed (no longer counted)
    expect(vms.list().map((v) => v.diskMiB)).toEqual([1536, 1536]);
  });

  it('a new agent on the same state dir adopts the warm VMs, binds them before the set arrives, keeps them when it does', {
    timeout: 120_000,
  }, async () => {
    const before = vms
      .list()
      .map((v) => v.instanceId)
      .sort();
    await stopAgent();
    await startAgent();
    expect(await pool()).toMatchObject({
      outdated: 2,
      message: 'adopted: waiting for SetWarmPools',
    });

    const { vm } = await client.createVM({ spec: { ...T2, vmId: 'env-2' }, pool: POOL });
    expect(vm).toMatchObject({ origin: VMOrigin.VM_ORIGIN_WARM, pool: POOL });
    expect(await exec('env-2', 'print("adopted")')).toBe('adopted\n');

    const set = await client.setWarmPools({ pools: [{ name: POOL, template: T2, replicas: 1 }] });
    expect(set.pools[0]).toMatchObject({ ready: 1, booting: 0, outdated: 0 });
    expect(
      vms
        .list()
        .map((v) => v.instanceId)
        .sort(),
    ).toEqual(before); // nothing rebooted

    // A pool that leaves the set is drained; the environment it gave a VM to stays.
    await client.setWarmPools({ pools: [] });
    await watchUntil((i) => i.warmVms === 0, 30_000);
    expect(vms.list().map((v) => v.vmId)).toEqual(['env-2']);
  });
});
