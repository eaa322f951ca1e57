// The local single-node cluster itself: idempotent `up`, etcd locked down like a real control
// plane, recovery from killed components, bounded image builds.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { clusterStatus } from '../src/cluster/local-cluster.ts';
import { etcdRequest } from '../src/cluster/pki.ts';
import { prepareLocalStack } from '../src/stack.ts';
import { waitFor } from '../src/wait.ts';
import { k, run, stack, startWithoutWaggle } from './fixture.ts';

startWithoutWaggle();

describe('the local single-node cluster', () => {
  it('is idempotent: a second up keeps every running component', async () => {
    const before = await clusterStatus();
    expect(before.components.map((c) => c.name)).toEqual([
      'containerd',
      'etcd',
      'kube-apiserver',
      'kube-controller-manager',
      'kube-scheduler',
      'kubelet',
      'kube-proxy',
    ]);
    expect(before.components.every((c) => c.running)).toBe(true);
    const t = Date.now();
    await prepareLocalStack();
    expect(Date.now() - t).toBeLessThan(60_000);
    expect((await clusterStatus()).components).toEqual(before.components);
    expect(await k(['get', 'nodes', '--no-headers'])).toMatch(/^waggle-node\s+Ready\s/);
  });

  it('runs etcd like a real control plane: TLS only, and only the apiserver’s client certificate opens it', async () => {
    const p = stack.cluster.paths;
    // What a process on the node (or a guest that reached the node's loopback) would try first.
    const plain = await fetch('http://127.0.0.1:12379/v3/kv/range', {
      method: 'POST',
      body: JSON.stringify({ key: 'L3JlZ2lzdHJ5L3NlY3JldHMv', range_end: 'L3JlZ2lzdHJ5L3NlY3JldHMw' }),
    }).then(
      async (r) => `HTTP ${r.status} ${await r.text()}`,
      (err: Error) => `refused: ${(err.cause as Error | undefined)?.message ?? err.message}`,
    );
    // Go answers plain HTTP on a TLS port with a 400 ("client sent an HTTP request to an HTTPS
    // server"), or the connection is refused; never a key.
    expect(plain).toMatch(/^refused|^HTTP 400 /);
    expect(plain).not.toMatch(/kvs/);
    // TLS without a client certificate: the handshake is refused, or the request is.
    const anonymous = await etcdRequest(p, {
      path: '/v3/kv/range',
      method: 'POST',
      body: JSON.stringify({ key: 'L3JlZ2lzdHJ5L3NlY3JldHMv', range_end: 'L3JlZ2lzdHJ5L3NlY3JldHMw' }),
      withClientCert: false,
    }).then(
      (status) => `HTTP ${status}`,
      (err: Error) => `refused: ${err.message}`,
    );
    expect(anonymous).toMatch(/^refused/);
    // The apiserver's certificate works (so the refusals above are not a dead etcd).
    expect(await etcdRequest(p)).toBe(200);
    const args = (
      await readFile(
        `/proc/${(await clusterStatus()).components.find((c) => c.name === 'etcd')?.pid}/cmdline`,
        'utf8',
      )
    ).split('\0');
    expect(args).toContain('--client-cert-auth=true');
    expect(args).toContain('--peer-client-cert-auth=true');
  });

  it('survives a crash: components killed with SIGKILL (stale pid files) come back with the next up', async () => {
    const before = await clusterStatus();
    const victims = before.components.filter((c) => c.name === 'kube-scheduler' || c.name === 'kubelet');
    expect(victims).toHaveLength(2);
    for (const v of victims) process.kill(v.pid as number, 'SIGKILL');
    await waitFor(
      clusterStatus,
      (s) => s.components.filter((c) => !c.running).length === 2,
      'the killed components to be seen as stopped',
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    await prepareLocalStack();
    const after = await clusterStatus();
    expect(after.components.every((c) => c.running)).toBe(true);
    for (const v of victims) {
      expect(after.components.find((c) => c.name === v.name)?.pid, v.name).not.toBe(v.pid);
    }
    await waitFor(
      () => k(['get', 'nodes', '--no-headers']),
      (out) => /^waggle-node\s+Ready\s/.test(out),
      'the node Ready again',
      { timeoutMs: 60_000 },
    );
  });

  it('keeps at most two builds of each component image in podman', async () => {
    for (const c of ['operator', 'mcp-gateway', 'node-agent']) {
      // Only this repository: podman's reference filter also matches localhost/waggle/<c>-build (the
      // cached build stage) and the clean-clone test's <c>-clone images.
      const tags = (
        await run('podman', [
          'images',
          '--format',
          '{{.Repository}} {{.Tag}}',
          '--filter',
          `reference=localhost/waggle/${c}`,
        ])
      ).stdout
        .split('\n')
        .map((l) => l.trim().split(' '))
        .filter(([repo, tag]) => repo === `localhost/waggle/${c}` && tag)
        .map(([, tag]) => tag as string);
      expect(tags, c).toContain(stack.images[c as keyof typeof stack.images].split(':').pop());
      expect(tags.length, `${c}: ${tags.join(' ')}`).toBeLessThanOrEqual(2);
    }
  });
});
