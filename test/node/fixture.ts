// Shared by the `node` project's files: the local stack the global setup brought up (no second
// `up` per file), kubectl and MCP helpers, and a start without Waggle installed. The files share
// one real node and run one after another; ./sequencer.ts puts the chart's lifecycle (which ends
// with `pnpm waggle down`) last.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { beforeAll, inject } from 'vitest';
import { clusterPaths } from '../src/cluster/layout.ts';
import { kubectlFor } from '../src/cluster/local-cluster.ts';
import { apiserverURL } from '../src/cluster/pki.ts';
import { connectClient, ok } from '../src/mcp-client.ts';
import { qemuPidsByVmId } from '../src/node-vms.ts';
import { helmRun, type LocalStack, RELEASE, RELEASE_NAMESPACE } from '../src/stack.ts';

export const run = promisify(execFile);
export const REPO = join(import.meta.dirname, '..', '..');
export const NS = RELEASE_NAMESPACE;
/** The namespace the tests' agents use. */
export const AGENTS = 'agents-a';

/** The local stack the global setup prepared (./global-setup.ts). */
export const stack: LocalStack = (() => {
  const provided = inject('localStack');
  return {
    cluster: {
      paths: clusterPaths(),
      kubeconfigPath: provided.kubeconfigPath,
      server: apiserverURL,
      kubectl: provided.kubectl,
      k: kubectlFor(provided.kubectl, provided.kubeconfigPath),
    },
    images: provided.images,
    guestImages: provided.guestImages,
    helm: provided.helm,
  };
})();
export const k = (args: string[], input?: string) => stack.cluster.k(args, input);

/** Before this file's tests: no Waggle release and no agents' namespace (a developer's `pnpm waggle up` may have left them). */
export function startWithoutWaggle(): void {
  beforeAll(async () => {
    if ((await helmRun(stack, ['list', '-n', NS, '-q'])).includes(RELEASE)) {
      await helmRun(stack, ['uninstall', RELEASE, '--namespace', NS, '--wait', '--timeout', '5m']);
    }
    await k(['delete', 'namespace', AGENTS, '--ignore-not-found', '--wait=true']);
  });
}

/** An MCP client at the gateway Service of the installed release. */
export async function mcpClient(token: string): Promise<Client> {
  const ip = (await k(['get', 'svc', '-n', NS, `${RELEASE}-mcp`, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  return connectClient(`http://${ip}:8080/mcp`, token, 'node-test');
}

/** Calls a tool that must succeed; returns its structured content. */
export const tool = ok;

/** Every QEMU process on this machine (nothing may be left after an uninstall or `down`). */
export const qemuPids = async (): Promise<number[]> =>
  run('pgrep', ['-f', '^qemu-system-x86_64 ']).then(
    (r) => r.stdout.split('\n').filter(Boolean).map(Number),
    () => [],
  );

/**
 * QEMU processes of environments' VMs: not the node-agent's template snapshot VMs or warm VMs,
 * which come and go on their own (docs/adr/0014).
 */
export const environmentQemuPids = async (): Promise<number[]> =>
  [...(await qemuPidsByVmId()).values()].flat().sort((a, b) => a - b);

export const podsReady = async () => {
  const pods = JSON.parse(await k(['get', 'pods', '-n', NS, '-o', 'json'])) as {
    items: Array<{
      metadata: { name: string; deletionTimestamp?: string };
      status: { conditions?: Array<{ type: string; status: string }> };
    }>;
  };
  return pods.items;
};

export const allReady = (items: Awaited<ReturnType<typeof podsReady>>) =>
  items.length > 0 &&
  items.every(
    (p) =>
      !p.metadata.deletionTimestamp &&
      p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  );
