import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cacheRoot } from './cache.ts';

const run = promisify(execFile);

/** The Go program that runs kind's own create path on a config (test/kind-config-check). */
export const KIND_CHECK_SOURCE = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'kind-config-check');
const SOURCE_FILES = ['go.mod', 'go.sum', 'main.go'];

export interface KindNode {
  name: string;
  role: string;
  image: string;
  runArgs: string[];
  kubeadmConfig: string;
}

export type KindCheckResult = { accepted: true; nodes: KindNode[] } | { accepted: false; error: string };

/**
 * Builds the checker once per source hash into `<cache>/tools/` (sigs.k8s.io/kind from the Go
 * module proxy) and returns its path. Fails with what to do when Go is missing.
 */
export async function buildKindConfigCheck(): Promise<string> {
  const hash = createHash('sha256');
  for (const f of SOURCE_FILES) hash.update(f).update(await readFile(join(KIND_CHECK_SOURCE, f)));
  const out = join(cacheRoot(), 'tools', `kind-config-check-${hash.digest('hex').slice(0, 16)}`);
  if (
    await access(out).then(
      () => true,
      () => false,
    )
  ) {
    return out;
  }
  const go = await run('go', ['env', 'GOVERSION']).then(
    (r) => r.stdout.trim(),
    () => '',
  );
  if (!go) {
    throw new Error(
      'Go is not installed (or not on PATH): the kind config check builds sigs.k8s.io/kind ' +
        'from the Go module proxy with Go ≥ 1.25 (test/scripts/setup.sh installs it)',
    );
  }
  await mkdir(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await run('go', ['build', '-o', tmp, '.'], {
      cwd: KIND_CHECK_SOURCE,
      env: { ...process.env, CGO_ENABLED: '0' },
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    await rm(tmp, { force: true });
    const e = err as { stderr?: string; message: string };
    throw new Error(`building test/kind-config-check with ${go} failed: ${e.stderr || e.message}`);
  }
  await rename(tmp, out);
  return out;
}

/** Runs kind's create path on `configPath` (no container engine; see main.go). */
export async function checkKindConfig(binary: string, configPath: string): Promise<KindCheckResult> {
  const { stdout, code, stderr } = await run(binary, [configPath], {
    maxBuffer: 16 * 1024 * 1024,
  }).then(
    (r) => ({ ...r, code: 0 }),
    (e: { stdout?: string; stderr?: string; code?: number }) => ({
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
      code: e.code ?? -1,
    }),
  );
  if (code !== 0 && code !== 1) {
    throw new Error(`kind-config-check exited ${code}: ${stderr}`);
  }
  return JSON.parse(stdout) as KindCheckResult;
}
