import { k8sTime, type WaggleNode, type WagglePool, type WagglePoolStatus } from '@waggle/crds';
import { Code, ConnectError } from '@waggle/node-agent/client';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { NodeHealth } from '../environment/placement.ts';
import { nodeKey, PoolController, poolKey } from './pool-controller.ts';
import { templateHash } from './template.ts';

// The pool controller against in-memory caches and node-agents: what each node is told, when
// it is told again, and the status each pool gets.

const T0 = Date.parse('2026-12-02T10:00:00Z');
const TEMPLATE = {
  runtime: 'python' as const,
  resources: { cpus: 1, memoryMiB: 512, diskMiB: 2048 },
  network: { egress: 'all' as const },
};
type Told = { node: string; pools: Array<{ name: string; replicas: number; cpus?: number }> };

class World {
  now = T0;
  pools = new Map<string, WagglePool>();
  nodes = new Map<string, WaggleNode>();
  told: Told[] = [];
  statusWrites: WagglePoolStatus[] = [];
  failing = false;

  addNode(name: string, vms = 10): void {
    this.nodes.set(name, {
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleNode',
      metadata: { name },
      spec: { unschedulable: false },
      status: {
        endpoint: `https://${name}:7443`,
        capacity: { vms, cpus: 64, memoryMiB: 65_536 },
        runtimes: ['python'],
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'AgentReady',
            message: '',
            lastTransitionTime: k8sTime(new Date(T0)),
          },
        ],
      },
    });
  }

  report(
    node: string,
    pools: Array<{ name: string; replicas?: number; ready: number; booting: number }>,
  ): void {
    const n = this.nodes.get(node) as WaggleNode;
    n.status = { ...n.status, pools };
  }

  setPool(name: string, replicas: number, template = TEMPLATE): void {
    this.pools.set(`ns/${name}`, {
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WagglePool',
      metadata: { name, namespace: 'ns', generation: 1 },
      spec: { template, replicas },
    });
  }

  controller(): PoolController {
    return new PoolController({
      getPool: (key) => this.pools.get(key),
      listPools: () => [...this.pools.values()],
      getNode: (name) => this.nodes.get(name),
      listNodes: () => [...this.nodes.values()],
      listEnvs: () => [],
      health: new NodeHealth({
        getNode: (name) => this.nodes.get(name),
        nodeSilentForMs: () => 0,
        nodeStaleAfterMs: 30_000,
      }),
      nodeStaleAfterMs: 30_000,
      agents: {
        for: (_endpoint, node) => ({
          setWarmPools: (async (req: {
            pools: Array<{ name: string; replicas: number; template: { cpus: number } }>;
          }) => {
            if (this.failing) throw new ConnectError('connection refused', Code.Unavailable);
            this.told.push({
              node,
              pools: req.pools.map((p) => ({ name: p.name, replicas: p.replicas, cpus: p.template.cpus })),
            });
            // The node reports what it holds at its next heartbeat.
            this.report(
              node,
              req.pools.map((p) => ({ name: p.name, replicas: p.replicas, ready: p.replicas, booting: 0 })),
            );
            return { pools: [] };
          }) as never,
        }),
      },
      store: {
        updateStatus: async (pool, status) => {
          this.statusWrites.push(status);
          const next = { ...pool, status };
          this.pools.set(`${pool.metadata.namespace}/${pool.metadata.name}`, next);
          return next;
        },
      },
      log: pino({ level: 'silent' }),
      config: { resyncMs: 60_000, driftGraceMs: 15_000 },
      now: () => this.now,
    });
  }
}

const settle = () => new Promise((r) => setImmediate(r));
/** Reconciles every node key once and lets the calls finish; returns what was told. */
async function tellNodes(w: World, c: PoolController): Promise<Told[]> {
  w.told = [];
  c.changed(); // what the informers say on any change
  for (const name of w.nodes.keys()) await c.reconcile(nodeKey(name));
  await settle();
  return w.told.sort((a, b) => a.node.localeCompare(b.node));
}

describe('PoolController: SetWarmPools', () => {
  it('tells each node its share of every pool, with the template', async () => {
    const w = new World();
    w.addNode('a');
    w.addNode('b');
    w.setPool('python-small', 3);
    const c = w.controller();
    expect(await tellNodes(w, c)).toEqual([
      { node: 'a', pools: [{ name: 'ns/python-small', replicas: 2, cpus: 1 }] },
      { node: 'b', pools: [{ name: 'ns/python-small', replicas: 1, cpus: 1 }] },
    ]);
  });

  it('tells again on a change and at the resync, not in between', async () => {
    const w = new World();
    w.addNode('a');
    w.setPool('p', 1);
    const c = w.controller();
    await tellNodes(w, c);
    w.now += 10_000;
    expect(await tellNodes(w, c)).toEqual([]);
    w.setPool('p', 4); // kubectl scale
    expect(await tellNodes(w, c)).toEqual([{ node: 'a', pools: [{ name: 'ns/p', replicas: 4, cpus: 1 }] }]);
    w.setPool('p', 4, { ...TEMPLATE, resources: { cpus: 2, memoryMiB: 512, diskMiB: 2048 } }); // template change
    expect((await tellNodes(w, c))[0]?.pools).toEqual([{ name: 'ns/p', replicas: 4, cpus: 2 }]);
    w.now += 59_000;
    expect(await tellNodes(w, c)).toEqual([]);
    w.now += 1_000;
    expect(await tellNodes(w, c)).toHaveLength(1);
  });

  it('tells a node to drain (an empty set) when its pool is deleted', async () => {
    const w = new World();
    w.addNode('a');
    w.setPool('p', 2);
    const c = w.controller();
    await tellNodes(w, c);
    w.pools.clear();
    expect(await tellNodes(w, c)).toEqual([{ node: 'a', pools: [] }]);
  });

  it('tells a node again when its report disagrees for longer than the drift grace (agent restarted)', async () => {
    const w = new World();
    w.addNode('a');
    w.setPool('p', 2);
    const c = w.controller();
    await tellNodes(w, c);
    w.report('a', []); // a restarted agent knows no pools
    w.now += 5_000;
    expect(await tellNodes(w, c)).toEqual([]);
    w.now += 10_000;
    expect(await tellNodes(w, c)).toHaveLength(1);
    w.report('a', [{ name: 'ns/p', replicas: 2, ready: 2, booting: 0 }]);
    w.now += 20_000;
    expect(await tellNodes(w, c)).toEqual([]);
  });

  it('backs off after a failed call instead of retrying at once', async () => {
    const w = new World();
    w.addNode('a');
    w.setPool('p', 1);
    const c = w.controller();
    w.failing = true;
    await tellNodes(w, c);
    w.failing = false;
    const retry = await c.reconcile(nodeKey('a'));
    expect(retry?.requeueAfterMs).toBe(1_000);
    w.now += 1_000;
    expect(await tellNodes(w, c)).toHaveLength(1);
  });

  it('does not call a node that is not Ready or is cordoned (cordoned: drained)', async () => {
    const w = new World();
    w.addNode('a');
    w.addNode('b');
    w.setPool('p', 2);
    (w.nodes.get('b') as WaggleNode).spec.unschedulable = true;
    const c = w.controller();
    expect(await tellNodes(w, c)).toEqual([
      { node: 'a', pools: [{ name: 'ns/p', replicas: 2, cpus: 1 }] },
      { node: 'b', pools: [] },
    ]);
    const conditions = w.nodes.get('a')?.status?.conditions ?? [];
    (conditions[0] as { status: string }).status = 'False';
    w.now += 60_000;
    expect((await tellNodes(w, c)).map((t) => t.node)).toEqual(['b']);
  });
});

describe('PoolController: status', () => {
  it('sums the nodes’ reports, shows each node’s share, the template hash and Ready', async () => {
    const w = new World();
    w.addNode('a');
    w.addNode('b');
    w.setPool('p', 3);
    w.report('a', [{ name: 'ns/p', ready: 2, booting: 0 }]);
    w.report('b', [{ name: 'ns/p', ready: 0, booting: 1 }]);
    const c = w.controller();
    c.changed();
    await c.reconcile(poolKey('ns/p'));
    expect(w.statusWrites).toHaveLength(1);
    expect(w.pools.get('ns/p')?.status).toMatchObject({
      replicas: 3,
      readyReplicas: 2,
      bootingReplicas: 1,
      nodes: [
        { name: 'a', replicas: 2, ready: 2, booting: 0 },
        { name: 'b', replicas: 1, ready: 0, booting: 1 },
      ],
      templateHash: templateHash(TEMPLATE),
      selector: 'waggle.dev/pool=p',
      observedGeneration: 1,
      conditions: [expect.objectContaining({ type: 'Ready', status: 'False', reason: 'Filling' })],
    });
    c.changed();
    await c.reconcile(poolKey('ns/p'));
    expect(w.statusWrites).toHaveLength(1); // nothing changed: no write
    w.report('b', [{ name: 'ns/p', ready: 1, booting: 0 }]);
    c.changed();
    await c.reconcile(poolKey('ns/p'));
    expect(w.pools.get('ns/p')?.status?.conditions?.[0]).toMatchObject({ status: 'True', reason: 'Filled' });
  });

  it('says InsufficientCapacity when the replicas do not fit', async () => {
    const w = new World();
    w.addNode('a', 2);
    w.setPool('p', 5);
    const c = w.controller();
    c.changed();
    await c.reconcile(poolKey('ns/p'));
    expect(w.pools.get('ns/p')?.status?.conditions?.[0]).toMatchObject({
      status: 'False',
      reason: 'InsufficientCapacity',
      message: expect.stringContaining('only 2 of 5'),
    });
  });
});
