import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, constants, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot } from './cache.ts';

export const KUBE_VERSION = 'v1.36.3';

export const KUBE_COMPONENTS = [
  'etcd',
  'kube-apiserver',
  'kubectl',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
] as const;
export type KubeComponent = (typeof KUBE_COMPONENTS)[number];

const BUILD_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'build-kube.sh');

export class KubeBuildError extends Error {
  override name = 'KubeBuildError';
}

/** Cache directory for this Kubernetes version and build recipe. */
export async function kubeBinDir(): Promise<string> {
  const recipe = await readFile(BUILD_SCRIPT);
  const key = createHash('sha256').update(recipe).digest('hex').slice(0, 12);
  return join(cacheRoot(), 'kube', `${KUBE_VERSION}-${key}`);
}

const exists = (p: string) =>
  access(p, constants.X_OK).then(
    () => true,
    () => false,
  );

/**
 * Returns absolute paths of the requested Kubernetes binaries, building the missing ones from
 * their Go modules first (cached, so this is instant once built).
 */
export async function ensureKubeBinaries<C extends KubeComponent>(
  components: readonly C[] = ['etcd', 'kube-apiserver', 'kubectl'] as C[],
  opts: { log?: (line: string) => void } = {},
): Promise<Record<C, string>> {
  const dir = await kubeBinDir();
  const paths = Object.fromEntries(components.map((c) => [c, join(dir, c)])) as Record<C, string>;
  const missing: C[] = [];
  for (const c of components) if (!(await exists(paths[c]))) missing.push(c);
  if (missing.length === 0) return paths;

  opts.log?.(`building ${missing.join(', ')} ${KUBE_VERSION} from Go modules into ${dir} (first time only)`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT, dir, ...missing], {
      env: { ...process.env, KUBE_VERSION },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let tail = '';
    const onData = (buf: Buffer) => {
      const text = buf.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (line.startsWith('build-kube:')) opts.log?.(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', (err) => reject(new KubeBuildError(`could not run ${BUILD_SCRIPT}: ${err.message}`)));
    child.once('exit', (code) =>
      code === 0
        ? resolve()
        : reject(
            new KubeBuildError(`building ${missing.join(', ')} failed (exit ${code}):\n${tail.trimEnd()}`),
          ),
    );
  });
  for (const c of missing) {
    if (!(await exists(paths[c]))) throw new KubeBuildError(`build finished but ${paths[c]} is missing`);
  }
  return paths;
}
