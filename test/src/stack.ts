import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cacheRoot } from './cache.ts';
import { importImage, nodeImages } from './cluster/containerd.ts';
import { ensureGuestRegistry, pushGuestImages } from './cluster/guest-registry.ts';
import { CLUSTER } from './cluster/layout.ts';
import { clusterUp, type LocalCluster } from './cluster/local-cluster.ts';
import { ensureComponentImages, type ImageRefs } from './container-images.ts';
import type { GuestRuntime } from './guest-images.ts';
import { ensureHelm } from './helm.ts';

const run = promisify(execFile);
export const CHART = join(import.meta.dirname, '..', '..', 'charts', 'waggle');
export const RELEASE = 'waggle';
export const RELEASE_NAMESPACE = 'waggle-system';

export interface LocalStack {
  cluster: LocalCluster;
  images: ImageRefs;
  /** The runtimes' built-in images in the node's registry (runtime → reference). */
  guestImages: Record<GuestRuntime, string>;
  helm: string;
}

/** The runtimes whose built-in images the local node gets (the chart's default runtimes). */
const GUEST_RUNTIMES: GuestRuntime[] = ['python', 'node', 'shell'];

/** The local cluster up, the component images built and imported into its node, helm ready. */
export async function prepareLocalStack(opts: { log?: (l: string) => void } = {}): Promise<LocalStack> {
  const log = opts.log ?? (() => undefined);
  const cluster = await clusterUp({ log });
  const t = Date.now();
  const images = await ensureComponentImages({ log });
  const present = await nodeImages(cluster.paths);
  for (const ref of Object.values(images)) {
    if (!present.includes(ref)) {
      log(`importing ${ref} into the node`);
      await importImage(cluster.paths, ref);
    }
  }
  log(`✓ images (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  const tg = Date.now();
  const registry = await ensureGuestRegistry(cluster.paths, log);
  const guestImages = await pushGuestImages(registry, GUEST_RUNTIMES, log);
  log(`✓ runtime images in the node's registry ${registry} (${((Date.now() - tg) / 1000).toFixed(1)} s)`);
  const helm = await ensureHelm({ log });
  return { cluster, images, guestImages, helm };
}

const tagOf = (ref: string) => ref.slice(ref.lastIndexOf(':') + 1);
const repositoryOf = (ref: string) => ref.slice(0, ref.lastIndexOf(':'));

/**
 * Chart values for the local node: its images, the host's guest-image cache, state under the cluster dir.
 * Strings go through `--set-string`: a content-hash tag can be all digits (`176362492599`), which
 * `--set` would turn into a number that the chart's schema rightly refuses.
 */
export function localChartValues(stack: LocalStack): string[] {
  const strings: Record<string, string> = {
    'images.operator.repository': repositoryOf(stack.images.operator),
    'images.operator.tag': tagOf(stack.images.operator),
    'images.gateway.repository': repositoryOf(stack.images['mcp-gateway']),
    'images.gateway.tag': tagOf(stack.images['mcp-gateway']),
    'images.nodeAgent.repository': repositoryOf(stack.images['node-agent']),
    'images.nodeAgent.tag': tagOf(stack.images['node-agent']),
    'images.pullPolicy': 'Never',
    'nodeAgent.imageCacheDir': cacheRoot(),
    'nodeAgent.stateDir': join(stack.cluster.paths.base, 'node-agent'),
    ...Object.fromEntries(
      Object.entries(stack.guestImages).map(([rt, ref]) => [`nodeAgent.guestImages.${rt}`, ref]),
    ),
  };
  const numbers: Record<string, number> = {
    // TCG guests mostly wait; let 8 one-vCPU VMs share this small machine.
    'nodeAgent.capacity.cpus': 16,
  };
  return [
    ...Object.entries(strings).flatMap(([k, val]) => ['--set-string', `${k}=${val}`]),
    '--set-string',
    `nodeAgent.images.insecureRegistries={${CLUSTER.registry}}`,
    ...Object.entries(numbers).flatMap(([k, val]) => ['--set', `${k}=${val}`]),
  ];
}

/** Runs helm against the cluster; returns stdout, throws with stderr. */
export async function helmRun(stack: LocalStack, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(stack.helm, args, {
      env: { ...process.env, KUBECONFIG: stack.cluster.kubeconfigPath },
      maxBuffer: 32 << 20,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`helm ${args[0]} failed: ${(e.stderr || e.message).trim()}`);
  }
}

/** Where the chart archive is published: the node's OCI registry (plain HTTP, loopback). */
export const CHART_REPOSITORY = `oci://${CLUSTER.registry}/charts`;

/**
 * `helm package` of charts/waggle, pushed to the node's OCI registry as a platform team would
 * publish it: returns the reference and version to install from. Every call repackages (the
 * version stays the chart's; the registry's tag then names the newest archive).
 */
export async function publishChart(
  stack: LocalStack,
): Promise<{ ref: string; version: string; digest: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'waggle-chart-'));
  try {
    const packaged = await helmRun(stack, ['package', CHART, '--destination', dir]);
    const archive = /saved it to: (\S+\.tgz)/.exec(packaged)?.[1];
    if (!archive) throw new Error(`helm package printed no archive path: ${packaged}`);
    const version = /-([0-9][^/]*)\.tgz$/.exec(archive)?.[1] ?? '';
    // Helm prints the push summary (with the digest) on stderr in some versions: read both.
    const pushed = await run(stack.helm, ['push', archive, CHART_REPOSITORY, '--plain-http'], {
      env: { ...process.env, KUBECONFIG: stack.cluster.kubeconfigPath },
    }).catch((e: { stderr?: string; message: string }) => {
      throw new Error(`helm push to ${CHART_REPOSITORY} failed: ${(e.stderr || e.message).trim()}`);
    });
    const digest = /Digest: (sha256:[a-f0-9]{64})/.exec(`${pushed.stdout}\n${pushed.stderr}`)?.[1] ?? '';
    return { ref: `${CHART_REPOSITORY}/waggle`, version, digest };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `helm upgrade --install` of the chart with the local values plus `extra` (`--set …`): packaged and
 * pushed to the node's OCI registry first, then installed from there (publishChart).
 */
export async function installWaggle(
  stack: LocalStack,
  extra: string[] = [],
  timeout = '5m',
): Promise<string> {
  // Helm installs a chart's crds/ once and never upgrades them (charts/waggle/README.md): apply
  // them first, so `pnpm waggle up` after a CRD change serves the new schema and columns.
  await stack.cluster.k(['apply', '--server-side', '--force-conflicts', '-f', join(CHART, 'crds')]);
  const chart = await publishChart(stack);
  return helmRun(stack, [
    'upgrade',
    '--install',
    RELEASE,
    chart.ref,
    '--version',
    chart.version,
    '--plain-http',
    '--namespace',
    RELEASE_NAMESPACE,
    '--create-namespace',
    '--wait',
    '--timeout',
    timeout,
    ...localChartValues(stack),
    ...extra,
  ]);
}
