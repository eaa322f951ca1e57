import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cacheRoot } from './cache.ts';

const run = promisify(execFile);
/** The helm that installs the chart here. */
export const HELM_VERSION = 'v4.3.1';
/** Helm 3, still what most platform teams run: the chart is linted, rendered and dry-run with it too. */
export const HELM3_VERSION = 'v3.22.0';
const SCRIPT = join(import.meta.dirname, '..', 'scripts', 'build-helm.sh');

export const helmPath = (version = HELM_VERSION) => join(cacheRoot(), 'tools', `helm-${version}`, 'helm');

/** The cached helm binary of `version`, built from its Go module the first time (~4 min cold). */
export async function ensureHelm(
  opts: { log?: (l: string) => void; version?: string } = {},
): Promise<string> {
  const version = opts.version ?? HELM_VERSION;
  const bin = helmPath(version);
  const ok = await access(bin, constants.X_OK).then(
    () => true,
    () => false,
  );
  if (!ok) {
    opts.log?.(`building helm ${version} from its Go module (first time only)`);
    await run('bash', [SCRIPT, join(bin, '..')], {
      env: { ...process.env, HELM_VERSION: version },
      maxBuffer: 16 << 20,
    });
  }
  return bin;
}
