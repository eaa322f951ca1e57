import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { VMSpec } from '../vm/vm-record.ts';
import { FakeWarmHost } from './fake-warm-host.ts';
import type { Resources, VMTemplate, WarmPoolSpec } from './pool-spec.ts';
import { WarmPools } from './warm-pools.ts';

const log = pino({ level: 'silent' });
const small: VMTemplate = {
  runtime: 'python',
  cpus: 1,
  memoryMiB: 256,
  diskMiB: 1024,
  egress: 'all',
  allowDomains: [],
};
const pool = (name: string, replicas: number, template: VMTemplate = small): WarmPoolSpec => ({
  name,
  template,
  replicas,
});
const spec = (vmId: string, template: VMTemplate = small): VMSpec => ({ vmId, ...template });
const roomy: Resources = { vms: 16, cpus: 16, memoryMiB: 16_384 };

function setup(
  opts: { capacity?: Resources; autoBoot?: boolean; maxConcurrentBoots?: number; graceMs?: number } = {},
) {
  const host = new FakeWarmHost({ autoBoot: opts.autoBoot ?? true });
  const clock = { now: 1_000_000 };
  const binds: Array<[string, number]> = [];
  const pools = new WarmPools({
    host,
    capacity: opts.capacity ?? roomy,
    log,
    maxConcurrentBoots: opts.maxConcurrentBoots ?? 1,
    adoptionGraceMs: opts.graceMs ?? 120_000,
    retryMs: { min: 5_000, max: 60_000 },
    now: () => clock.now,
    onBind: (p, ms) => binds.push([p, ms]),
  });
  return { host, pools, clock, binds };
}

/** Lets held boots and binds progress. */
const settle = () => new Promise((r) => setTimeout(r, 5));

describe('WarmPools: fill and refill', () => {
  it.each([
    { maxConcurrentBoots: 1, replicas: 3 },
    { maxConcurrentBoots: 2, replicas: 3 },
  ])(
    'fills a pool to its replicas with at most $maxConcurrentBoots boot(s) at a time',
    async ({ maxConcurrentBoots, replicas }) => {
      const { host, pools } = setup({ maxConcurrentBoots });
      const status = await pools.set([pool('team-a/py', replicas)]);
      expect(status[0]).toMatchObject({
        name: 'team-a/py',
        replicas,
        templateHash: host.templateHash(small),
      });
      await pools.idle();
      expect(host.warm('team-a/py').map((v) => v.state)).toEqual(Array(replicas).fill('running'));
      expect(host.maxBooting).toBe(maxConcurrentBoots);
      expect(pools.status()[0]).toMatchObject({ ready: replicas, booting: 0, outdated: 0, message: '' });
      expect(pools.warmVMs()).toBe(replicas);
    },
  );

  it('never exceeds the node capacity counting warm VMs, and says why a pool cannot fill', async () => {
    const { host, pools } = setup({ capacity: { vms: 8, cpus: 8, memoryMiB: 1024 } });
    host.add({ vmId: 'env-1', memoryMiB: 512 }); // an environment holds half the memory
    await pools.set([pool('a/one', 2), pool('a/two', 2)]);
    await pools.idle();
    expect(host.warm()).toHaveLength(2);
    const status = pools.status();
    expect(status.map((s) => s.ready).reduce((a, b) => a + b)).toBe(2);
    expect(status.find((s) => s.ready < 2)?.message).toMatch(/node full \(1024\/1024 MiB in use\)/);
  });

  it('replaces a warm VM whose QEMU exited, and trims a pool whose replicas went down', async () => {
    const { host, pools } = setup();
    await pools.set([pool('a/p', 2)]);
    await pools.idle();
    const [first] = host.warm();
    host.setState(first?.instanceId, 'exited');
    pools.wake();
    await pools.idle();
    expect(host.warm().map((v) => v.state)).toEqual(['running', 'running']);
    expect(host.vms.some((v) => v.instanceId === first?.instanceId)).toBe(false);
    await pools.set([pool('a/p', 1)]);
    await pools.idle();
    expect(host.warm()).toHaveLength(1);
  });

  it('fills the pools it can when one template cannot be booted here (no image for its runtime)', async () => {
    const { host, pools } = setup();
    const hash = host.templateHash.bind(host);
    host.templateHash = (t) => {
      if (t.runtime === 'node') throw new Error('no image for runtime "node" on this node');
      return hash(t);
    };
    const status = await pools.set([pool('a/js', 1, { ...small, runtime: 'node' }), pool('a/py', 1)]);
    await pools.idle();
    expect(host.warm().map((v) => v.pool)).toEqual(['a/py']);
    expect(status[0]).toMatchObject({ name: 'a/js', templateHash: '' });
    expect(pools.status()[0]?.message).toBe('no image for runtime "node" on this node');
  });

  it('backs off after a failed warm boot and says why, then retries', async () => {
    const { host, pools, clock } = setup();
    host.failBoots = true;
    await pools.set([pool('a/p', 1)]);
    await pools.idle();
    pools.wake();
    await pools.idle();
    expect(pools.status()[0]?.message).toMatch(/warm boot failed \(retry in 5 s\): no image for runtime/);
    host.failBoots = false;
    clock.now += 5_001;
    pools.wake();
    await pools.idle();
    expect(host.warm()).toHaveLength(1);
    expect(pools.status()[0]?.message).toBe('');
  });
});

describe('WarmPools: binding', () => {
  it('binds a ready VM of the pool and template, then boots a replacement', async () => {
    const { host, pools, binds } = setup();
    await pools.set([pool('a/p', 2)]);
    await pools.idle();
    const vm = await pools.bind(spec('env-1'), 'a/p');
    expect(vm).toMatchObject({ vmId: 'env-1', pool: 'a/p', state: 'running' });
    expect(binds.map(([p]) => p)).toEqual(['a/p']);
    await pools.idle();
    expect(host.warm('a/p')).toHaveLength(2);
    expect(host.vms).toHaveLength(3);
  });

  it.each([
    { case: 'another template', vmSpec: spec('env-1', { ...small, memoryMiB: 512 }), poolName: 'a/p' },
    { case: 'another pool', vmSpec: spec('env-1'), poolName: 'a/other' },
    { case: 'an invalid spec', vmSpec: spec('Not An Id'), poolName: 'a/p' },
    { case: 'a vm id that exists (a repeat)', vmSpec: spec('env-0'), poolName: 'a/p' },
  ])('binds nothing for $case', async ({ vmSpec, poolName }) => {
    const { host, pools } = setup();
    host.add({ vmId: 'env-0', pool: 'a/p', templateHash: host.templateHash(small) });
    await pools.set([pool('a/p', 1)]);
    await pools.idle();
    expect(await pools.bind(vmSpec, poolName)).toBeUndefined();
    expect(host.warm('a/p')).toHaveLength(1);
  });

  it('never hands one warm VM to two concurrent creates', async () => {
    const { host, pools } = setup({ autoBoot: false });
    await pools.set([pool('a/p', 2)]);
    host.release();
    await settle();
    host.release();
    await settle();
    const results = await Promise.all(
      ['e1', 'e2', 'e3', 'e4', 'e5'].map((id) => pools.bind(spec(id), 'a/p')),
    );
    const bound = results.filter((r) => r !== undefined);
    expect(bound).toHaveLength(2);
    expect(new Set(bound.map((r) => r.instanceId)).size).toBe(2);
    expect(host.errors).toEqual([]);
  });

  it('tries the next warm VM when a bind fails', async () => {
    const { host, pools } = setup();
    await pools.set([pool('a/p', 2)]);
    await pools.idle();
    const [oldest] = host.warm();
    const real = host.bind.bind(host);
    let calls = 0;
    host.bind = async (id, vmId) => {
      calls++;
      if (calls === 1) throw new Error('guest did not answer');
      return real(id, vmId);
    };
    const vm = await pools.bind(spec('env-1'), 'a/p');
    expect(calls).toBe(2);
    expect(vm?.instanceId).not.toBe(oldest?.instanceId);
  });
});

describe('WarmPools: template change, drain, eviction, restart', () => {
  it('replaces outdated VMs one at a time, each only after a new one is ready', async () => {
    const { host, pools } = setup({ autoBoot: false });
    await pools.set([pool('a/p', 2)]);
    host.release();
    await settle();
    host.release();
    await pools.idle();
    let minBindable = Infinity;
    host.onChange = () => {
      minBindable = Math.min(minBindable, host.warm().filter((v) => v.state === 'running').length);
    };
    const next = { ...small, memoryMiB: 384 };
    await pools.set([pool('a/p', 2, next)]);
    await settle();
    expect(pools.status()[0]).toMatchObject({ ready: 0, booting: 1, outdated: 2 });
    expect(await pools.bind(spec('old-env'), 'a/p')).toMatchObject({ memoryMiB: 256 }); // still bindable
    await settle();
    host.release();
    await settle();
    // One outdated VM was bound: one new ready VM and one outdated VM make the two replicas.
    expect(pools.status()[0]).toMatchObject({ ready: 1, booting: 1, outdated: 1 });
    host.release();
    await pools.idle();
    expect(pools.status()[0]).toMatchObject({ ready: 2, booting: 0, outdated: 0 });
    expect(host.warm().map((v) => v.memoryMiB)).toEqual([384, 384]);
    expect(minBindable).toBeGreaterThanOrEqual(1);
    expect(host.maxBooting).toBe(1);
  });

  it('with no room for one more VM, replaces outdated VMs in place (never all at once)', async () => {
    const { host, pools } = setup({ autoBoot: false, capacity: { vms: 2, cpus: 8, memoryMiB: 8192 } });
    await pools.set([pool('a/p', 2)]);
    host.release();
    await settle();
    host.release();
    await pools.idle();
    let minBindable = Infinity;
    host.onChange = () => {
      minBindable = Math.min(minBindable, host.warm().filter((v) => v.state === 'running').length);
    };
    await pools.set([pool('a/p', 2, { ...small, cpus: 2 })]);
    await settle();
    expect(pools.status()[0]).toMatchObject({ ready: 0, booting: 1, outdated: 1 });
    host.release();
    await settle();
    host.release();
    await pools.idle();
    expect(host.warm().map((v) => v.cpus)).toEqual([2, 2]);
    expect(minBindable).toBe(1);
  });

  it('drains pools that left the set, and leaves their bound VMs alone', async () => {
    const { host, pools } = setup();
    await pools.set([pool('a/p', 2), pool('a/q', 1)]);
    await pools.idle();
    await pools.bind(spec('env-1'), 'a/p');
    await pools.set([pool('a/q', 1)]);
    await pools.idle();
    expect(host.warm('a/p')).toEqual([]);
    expect(host.vms.find((v) => v.vmId === 'env-1')).toMatchObject({ pool: 'a/p', state: 'running' });
    expect(host.warm('a/q')).toHaveLength(1);
  });

  it('evicts a warm VM when a create needs the room, and boots no warm VM into room promised to a create', async () => {
    const { host, pools } = setup({ capacity: { vms: 3, cpus: 8, memoryMiB: 8192 } });
    await pools.set([pool('a/p', 2), pool('a/q', 1)]);
    await pools.idle();
    const during: number[] = [];
    const created = await pools.withRoom(spec('env-1'), async () => {
      // Before the create's record exists, the room is promised: the refill boots nothing.
      pools.wake();
      await settle();
      during.push(host.vms.length);
      host.add({ vmId: 'env-1', state: 'booting' });
      pools.wake();
      await settle();
      during.push(host.vms.length);
      return 'ok';
    });
    expect(created).toBe('ok');
    expect(during).toEqual([2, 3]);
    expect(host.vms).toHaveLength(3);
    await pools.idle();
    expect(host.vms).toHaveLength(3); // full again: no refill past capacity
  });

  it('re-learns warm VMs after a restart: bindable at once, kept until the set arrives or the grace ends', async () => {
    const { host, pools, clock } = setup({ graceMs: 120_000 });
    const hash = host.templateHash(small);
    for (let i = 0; i < 3; i++) host.add({ pool: 'a/p', templateHash: hash });
    host.add({ pool: 'a/gone', templateHash: hash });
    pools.start();
    await pools.idle();
    expect(host.warm()).toHaveLength(4);
    expect(pools.status()).toEqual([
      expect.objectContaining({ name: 'a/gone', outdated: 1, message: 'adopted: waiting for SetWarmPools' }),
      expect.objectContaining({ name: 'a/p', outdated: 3 }),
    ]);
    expect(await pools.bind(spec('env-1'), 'a/p')).toMatchObject({ vmId: 'env-1' });
    clock.now += 120_000;
    pools.wake();
    await pools.idle();
    expect(host.warm()).toEqual([]); // the grace ended without a set: drained
    expect(host.boots).toBe(0);
    pools.close();
  });

  it('keeps adopted warm VMs of the declared template when the set arrives (no reboots)', async () => {
    const { host, pools } = setup();
    const hash = host.templateHash(small);
    for (let i = 0; i < 2; i++) host.add({ pool: 'a/p', templateHash: hash });
    await pools.set([pool('a/p', 2)]);
    await pools.idle();
    expect(host.boots).toBe(0);
    expect(pools.status()[0]).toMatchObject({ ready: 2, outdated: 0 });
  });
});
