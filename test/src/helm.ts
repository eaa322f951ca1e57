import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cacheRoot } from './cache.ts';

const run = promisify(execFile);
export const HELM_VERSION = 'v4.3.1';
const SCRIPT = join(import.meta.dirname, '..', 'scripts', 'build-helm.sh');

/** The cached helm binary, built from its Go module the first time (~4 min cold). */
export async function ensureHelm(opts: { log?: (l: string) => void } = {}): Promise<string> {
  const dir = join(cacheRoot(), 'tools', `helm-${HELM_VERSION}`);
  const bin = join(dir, 'helm');
  const ok = await access(bin, constants.X_OK).then(
    () => true,
    () => false,
  );
  if (!ok) {
    opts.log?.(`building helm ${HELM_VERSION} from its Go module (first time only)`);
    await run('bash', [SCRIPT, dir], { env: { ...process.env, HELM_VERSION }, maxBuffer: 16 << 20 });
  }
  return bin;
}
