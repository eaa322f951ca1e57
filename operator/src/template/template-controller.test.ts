import type { WaggleNode, WaggleTemplate, WaggleTemplateStatus } from '@waggle/crds';
import { Code, ConnectError, ImagePullPhase } from '@waggle/node-agent/client';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { TemplateController } from './template-controller.ts';

// The template controller against in-memory fakes: which nodes are asked, what the status says
// while, after and when not, and when nodes are asked again. operator/test/real-node-agent.test.ts
// runs it against a real apiserver and a real node-agent pulling from a real registry.

const DIGEST = `sha256:${'cd'.repeat(32)}`;
const drain = () => new Promise((r) => setImmediate(r));

interface Call {
  node: string;
  image: string;
  finish: (outcome: { digest: string; cached: boolean; rootfsBytes?: number } | Error) => void;
}

class World {
  now = Date.parse('2026-12-03T10:00:00Z');
  readonly templates = new Map<string, WaggleTemplate>();
  readonly nodes: WaggleNode[] = [];
  readonly calls: Call[] = [];
  readonly writes: WaggleTemplateStatus[] = [];
  /** Steps each PullImage streams before it waits for `finish`. */
  steps: ImagePullPhase[] = [ImagePullPhase.RESOLVING, ImagePullPhase.PULLING];

  node(name: string, ociImages: boolean): void {
    this.nodes.push({
      metadata: { name },
      spec: {},
      status: { endpoint: `https://${name}:7443`, ociImages },
    } as unknown as WaggleNode);
  }

  template(name: string, image?: string): void {
    this.templates.set(name, {
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleTemplate',
      metadata: { name, generation: 1 },
      spec: {
        runtime: 'shell',
        resources: { cpus: 1, memoryMiB: 512, diskMiB: 2048 },
        network: { egress: 'all' },
        ...(image ? { image } : {}),
      },
    } as unknown as WaggleTemplate);
  }

  status(name: string) {
    return this.templates.get(name)?.status;
  }

  controller() {
    const world = this;
    return new TemplateController({
      getTemplate: (name) => this.templates.get(name),
      listTemplates: () => [...this.templates.values()],
      listNodes: () => this.nodes,
      health: { alive: () => true },
      agents: {
        for: (_endpoint, node) => ({
          pullImage: async function* (req: { image: string }) {
            let finish: Call['finish'] = () => undefined;
            const done = new Promise<{ digest: string; cached: boolean; rootfsBytes?: number } | Error>(
              (r) => {
                finish = r;
              },
            );
            world.calls.push({ node, image: req.image, finish });
            for (const phase of world.steps) yield { event: { case: 'phase', value: phase } };
            const outcome = await done;
            if (outcome instanceof Error) throw outcome;
            yield { event: { case: 'image', value: outcome } };
          } as never,
        }),
      },
      store: {
        updateStatus: async (t, status) => {
          this.writes.push(status);
          const next = { ...t, status };
          this.templates.set(t.metadata.name as string, next);
          return next;
        },
      },
      log: pino({ level: 'silent' }),
      config: { recheckMs: 600_000, retryMs: 60_000 },
      now: () => this.now,
    });
  }
}

describe('template image pre-pulls', () => {
  it('asks each node that runs images, says the step while it pulls, then Ready with the digest', async () => {
    const w = new World();
    w.node('n1', true);
    w.node('builtin-only', false);
    w.template('ds', 'registry.test/team/ds:1');
    const c = w.controller();

    await c.reconcile('ds');
    await drain();
    expect(w.calls.map((x) => `${x.node} ${x.image}`)).toEqual(['n1 registry.test/team/ds:1']);
    await c.reconcile('ds'); // the steps queued it
    expect(w.status('ds')?.ready).toBe('0/1');
    expect(w.status('ds')?.nodes).toEqual([
      expect.objectContaining({ name: 'n1', state: 'Pulling', message: 'downloading the layers' }),
    ]);
    expect(w.status('ds')?.conditions?.[0]).toMatchObject({
      status: 'False',
      reason: 'Pulling',
      message: '0 of 1 nodes have the image; pulling on n1',
    });

    w.calls[0]?.finish({ digest: DIGEST, cached: false });
    await drain();
    const requeue = await c.reconcile('ds');
    expect(w.status('ds')?.ready).toBe('1/1');
    expect(w.status('ds')?.nodes?.[0]).toMatchObject({ name: 'n1', state: 'Ready', digest: DIGEST });
    expect(w.status('ds')?.nodes?.[0]?.message).toMatch(new RegExp(`^pulled ${DIGEST} in \\d+\\.\\d s$`));
    expect(w.status('ds')?.conditions?.[0]).toMatchObject({ status: 'True', reason: 'ImagePulled' });
    expect(requeue?.requeueAfterMs).toBe(600_000); // asked again in 10 min
    expect(w.calls).toHaveLength(1);

    // The recheck: a cached answer keeps it Ready throughout.
    w.now += 600_000;
    w.steps = [ImagePullPhase.RESOLVING];
    await c.reconcile('ds');
    await drain();
    expect(w.calls).toHaveLength(2);
    await c.reconcile('ds');
    expect(w.status('ds')?.nodes?.[0]).toMatchObject({ state: 'Ready', digest: DIGEST });
    w.calls[1]?.finish({ digest: DIGEST, cached: true });
    await drain();
    await c.reconcile('ds');
    expect(w.status('ds')?.nodes?.[0]).toMatchObject({ state: 'Ready', message: `has ${DIGEST}` });
  });

  it('says why a node cannot pull the image, and asks it again after the retry interval', async () => {
    const w = new World();
    w.node('n1', true);
    w.template('bad', 'registry.test/team/nosh:1');
    const c = w.controller();
    await c.reconcile('bad');
    await drain();
    w.calls[0]?.finish(
      new ConnectError('image "registry.test/team/nosh:1" has no /bin/sh', Code.FailedPrecondition),
    );
    await drain();
    expect((await c.reconcile('bad'))?.requeueAfterMs).toBe(60_000);
    expect(w.status('bad')?.nodes?.[0]).toMatchObject({ state: 'Failed' });
    expect(w.status('bad')?.conditions?.[0]).toMatchObject({ status: 'False', reason: 'PullFailed' });
    expect(w.status('bad')?.conditions?.[0]?.message).toMatch(/^n1: .*has no \/bin\/sh/);
    w.now += 30_000;
    await c.reconcile('bad');
    await drain();
    expect(w.calls).toHaveLength(1);
    w.now += 30_000;
    await c.reconcile('bad');
    await drain();
    expect(w.calls).toHaveLength(2);
    // Still failing: it waits twice as long each time (up to the recheck interval).
    w.calls[1]?.finish(new ConnectError('still no /bin/sh', Code.FailedPrecondition));
    await drain();
    expect((await c.reconcile('bad'))?.requeueAfterMs).toBe(120_000);
  });

  it('keeps a node Ready when only asking it again fails for a transient reason', async () => {
    const w = new World();
    w.node('n1', true);
    w.template('ds', 'registry.test/team/ds:1');
    const c = w.controller();
    await c.reconcile('ds');
    await drain();
    w.calls[0]?.finish({ digest: DIGEST, cached: false });
    await drain();
    await c.reconcile('ds');
    w.now += 600_000;
    w.steps = [ImagePullPhase.RESOLVING]; // the node has it: no download step
    await c.reconcile('ds');
    await drain();
    w.calls[1]?.finish(new ConnectError('the node-agent restarted', Code.Unavailable));
    await drain();
    await c.reconcile('ds');
    expect(w.status('ds')?.nodes?.[0]).toMatchObject({ state: 'Ready', digest: DIGEST });
    expect(w.status('ds')?.ready).toBe('1/1');
  });

  it('fails a node whose copy of the image would not fit the template’s disk', async () => {
    const w = new World();
    w.node('n1', true);
    w.template('big', 'registry.test/team/big:1');
    const c = w.controller();
    await c.reconcile('big');
    await drain();
    w.calls[0]?.finish({ digest: DIGEST, cached: false, rootfsBytes: 3 * 2 ** 30 });
    await drain();
    await c.reconcile('big');
    expect(w.status('big')?.nodes?.[0]).toMatchObject({ state: 'Failed' });
    expect(w.status('big')?.nodes?.[0]?.message).toMatch(
      /needs a disk of at least 3072 MiB, more than the template's 2048 MiB/,
    );
  });

  it('pulls one template at a time per node; the next starts when the first ends', async () => {
    const w = new World();
    w.node('n1', true);
    w.template('a', 'registry.test/a:1');
    w.template('b', 'registry.test/b:1');
    const c = w.controller();
    await c.reconcile('a');
    await c.reconcile('b');
    await drain();
    expect(w.calls.map((x) => x.image)).toEqual(['registry.test/a:1']);
    expect(w.status('b')?.nodes?.[0]).toMatchObject({
      state: 'Pulling',
      message: 'waiting for another template’s pull on this node',
    });
    w.calls[0]?.finish({ digest: DIGEST, cached: false });
    await drain();
    await c.reconcile('b');
    await drain();
    expect(w.calls.map((x) => x.image)).toEqual(['registry.test/a:1', 'registry.test/b:1']);
  });

  it('a template without an image is ready at once; with no node that runs images it says so', async () => {
    const w = new World();
    w.node('builtin-only', false);
    w.template('plain');
    w.template('ds', 'registry.test/team/ds:1');
    const c = w.controller();
    await c.reconcile('plain');
    await c.reconcile('ds');
    expect(w.calls).toEqual([]);
    expect(w.status('plain')?.conditions?.[0]).toMatchObject({ status: 'True', reason: 'BuiltInImage' });
    expect(w.status('ds')?.ready).toBe('0/0');
    expect(w.status('ds')?.conditions?.[0]).toMatchObject({ status: 'False', reason: 'NoImageNodes' });
  });
});
