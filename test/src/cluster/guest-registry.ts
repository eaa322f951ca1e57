import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { type GuestRuntime, guestImageLayout } from '../guest-images.ts';
import { ensureRegistry, registryPath } from '../oci-registry.ts';
import { type DaemonSpec, ensureDaemon } from './daemons.ts';
import { CLUSTER, type ClusterPaths } from './layout.ts';

const run = promisify(execFile);

/**
 * The node's OCI registry (CNCF distribution, loopback only): `pnpm waggle up` pushes the
 * runtimes' built-in images there and the node-agent (host network) pulls them at start, so the
 * node builds no root filesystem from a mirror. Its storage lives under the cluster's directory
 * (`down` removes it with everything else).
 */
export function guestRegistryDaemon(p: ClusterPaths): DaemonSpec {
  return {
    name: 'registry',
    command: registryPath(),
    args: ['serve', join(p.config, 'registry.yml')],
    logPath: join(p.logs, 'registry.log'),
    pidPath: join(p.pids, 'registry.pid'),
    env: { ...process.env, OTEL_TRACES_EXPORTER: 'none' },
  };
}

/** Starts the node's registry unless it runs; resolves when it answers. Returns its host:port. */
export async function ensureGuestRegistry(p: ClusterPaths, log: (l: string) => void): Promise<string> {
  await ensureRegistry({ log });
  const config = join(p.config, 'registry.yml');
  const exists = await access(config).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await mkdir(join(p.base, 'registry'), { recursive: true });
    await writeFile(
      config,
      `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n` +
        `storage:\n  filesystem:\n    rootdirectory: ${join(p.base, 'registry')}\n  delete:\n    enabled: true\n` +
        `http:\n  addr: ${CLUSTER.registry}\n  secret: ${randomBytes(16).toString('hex')}\n`,
    );
  }
  const spec = guestRegistryDaemon(p);
  await ensureDaemon(spec);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const r = await fetch(`http://${CLUSTER.registry}/v2/`).catch(() => undefined);
    if (r?.ok) return CLUSTER.registry;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(
    `the node's registry did not answer on ${CLUSTER.registry}; last lines of ${spec.logPath}:\n${(await readFile(spec.logPath, 'utf8').catch(() => '')).slice(-2000)}`,
  );
}

/**
 * Builds (or finds cached) each runtime's built-in image and pushes it to the node's registry,
 * tagged with its cache key (build.sh: recipe + package versions; a change of either is a new tag). Returns runtime → reference.
 */
export async function pushGuestImages(
  registry: string,
  runtimes: readonly GuestRuntime[],
  log: (l: string) => void,
): Promise<Record<GuestRuntime, string>> {
  const refs = {} as Record<GuestRuntime, string>;
  for (const rt of runtimes) {
    const layout = await guestImageLayout(rt); // <cache>/images/rootfs-<rt>-<key>/oci:rootfs
    const hash = basename(dirname(layout.slice(0, layout.lastIndexOf(':'))))
      .split('-')
      .pop();
    const ref = `${registry}/waggle/guest-${rt}:${hash}`;
    await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}`, `docker://${ref}`], {
      maxBuffer: 16 << 20,
    }).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`pushing ${rt}'s image to ${ref} failed: ${(err.stderr ?? err.message).trim()}`);
    });
    log(`${rt} runtime image: ${ref}`);
    refs[rt] = ref;
  }
  return refs;
}
