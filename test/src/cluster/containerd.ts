import { createHash } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheRoot } from '../cache.ts';
import type { DaemonSpec } from './daemons.ts';
import { sh } from './host.ts';
import { CLUSTER, type ClusterPaths } from './layout.ts';

const REPO = join(import.meta.dirname, '..', '..', '..');

/** containerd 1.6 config for the cluster's own containerd instance (own root, state, socket). */
export function containerdConfig(p: ClusterPaths): string {
  return `version = 2
root = "${p.containerdRoot}"
state = "${p.containerdState}"

[grpc]
  address = "${p.containerdSocket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${CLUSTER.pauseImage}"
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj would fail every sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${p.cniConf}"
`;
}

/** bridge + host-local + portmap + loopback: pod addresses on ${CLUSTER.bridge}. */
export function cniConflist(): string {
  return JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: CLUSTER.cniNetwork,
      plugins: [
        {
          type: 'bridge',
          bridge: CLUSTER.bridge,
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: CLUSTER.podCIDR }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

export async function writeContainerdFiles(p: ClusterPaths): Promise<void> {
  await mkdir(p.cniConf, { recursive: true });
  await mkdir(p.containerdState, { recursive: true });
  await mkdir(p.config, { recursive: true });
  await writeFile(join(p.config, 'containerd.toml'), containerdConfig(p));
  await writeFile(join(p.cniConf, '10-waggle.conflist'), cniConflist());
}

export const containerdDaemon = (p: ClusterPaths): DaemonSpec => ({
  name: 'containerd',
  command: '/usr/bin/containerd',
  args: ['--config', join(p.config, 'containerd.toml')],
  logPath: join(p.logs, 'containerd.log'),
  pidPath: join(p.pids, 'containerd.pid'),
});

export const ctr = (p: ClusterPaths, args: string[], allowFail = false) =>
  sh('ctr', ['--address', p.containerdSocket, '--namespace', 'k8s.io', ...args], allowFail);

/** Images (by reference) in the node's containerd. */
export async function nodeImages(p: ClusterPaths): Promise<string[]> {
  return (await ctr(p, ['images', 'ls', '-q'], true)).split('\n').filter(Boolean);
}

/**
 * Moves an image from podman's store into the node's containerd (`podman save` as an OCI archive,
 * `ctr images import`), so pods can use it with imagePullPolicy Never/IfNotPresent.
 */
export async function importImage(p: ClusterPaths, ref: string): Promise<void> {
  const archive = join(p.run, `import-${createHash('sha256').update(ref).digest('hex').slice(0, 8)}.tar`);
  await sh('podman', ['save', '--format', 'oci-archive', '-o', archive, ref]);
  try {
    await ctr(p, ['images', 'import', archive]); // podman's archive carries the full reference
    if (!(await nodeImages(p)).includes(ref)) {
      throw new Error(`image ${ref} did not appear in the node's containerd after import`);
    }
  } finally {
    await sh('rm', ['-f', archive], true);
  }
}

/** Builds the static pause binary and image (cached by source hash) and imports it. */
export async function ensurePauseImage(p: ClusterPaths, log: (l: string) => void): Promise<void> {
  if ((await nodeImages(p)).includes(CLUSTER.pauseImage)) return;
  const src = join(REPO, 'images', 'pause');
  const hash = createHash('sha256')
    .update(await readFile(join(src, 'main.go')))
    .update(await readFile(join(src, 'Dockerfile')))
    .digest('hex')
    .slice(0, 12);
  const ctx = join(cacheRoot(), 'images', `pause-${hash}`);
  const bin = join(ctx, 'pause');
  if (
    !(await access(bin).then(
      () => true,
      () => false,
    ))
  ) {
    log('building the pause image (static Go binary)');
    await mkdir(ctx, { recursive: true });
    await sh('env', [
      'CGO_ENABLED=0',
      'go',
      'build',
      '-C',
      src,
      '-trimpath',
      '-ldflags=-s -w',
      '-o',
      bin,
      '.',
    ]);
    await writeFile(join(ctx, 'Dockerfile'), await readFile(join(src, 'Dockerfile')));
  }
  await sh('podman', ['build', '-q', '-t', CLUSTER.pauseImage, ctx]);
  await importImage(p, CLUSTER.pauseImage);
}
