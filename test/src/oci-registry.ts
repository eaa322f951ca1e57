import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, constants, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cacheRoot } from './cache.ts';
import { freePort } from './ports.ts';
import { waitFor } from './wait.ts';

const run = promisify(execFile);
/** The CNCF distribution registry (the reference OCI registry), built from its Go module. */
export const REGISTRY_VERSION = 'v3.1.2';
const SCRIPT = join(import.meta.dirname, '..', 'scripts', 'build-registry.sh');

export const registryPath = () => join(cacheRoot(), 'tools', `registry-${REGISTRY_VERSION}`, 'registry');

/** The cached registry binary, built from its Go module the first time (~2 min cold). */
export async function ensureRegistry(opts: { log?: (l: string) => void } = {}): Promise<string> {
  const bin = registryPath();
  const ok = await access(bin, constants.X_OK).then(
    () => true,
    () => false,
  );
  if (!ok) {
    opts.log?.(`building the distribution registry ${REGISTRY_VERSION} from its Go module (first time only)`);
    await run('bash', [SCRIPT, join(bin, '..')], {
      env: { ...process.env, REGISTRY_VERSION },
      maxBuffer: 16 << 20,
    });
  }
  return bin;
}

export interface LocalRegistry {
  /** host:port (loopback, plain HTTP) */
  host: string;
  /** When started with `auth`: the `.dockerconfigjson` of an imagePullSecret for it. */
  dockerConfigJson?: string;
  stop(): Promise<void>;
}

/**
 * Starts a registry on a free loopback port, storing in a temp dir removed at stop. With `auth`,
 * every request needs HTTP basic auth (htpasswd, bcrypt). Fails with what is missing when the
 * binary or `htpasswd` (apache2-utils) is not installed (`bash test/scripts/setup.sh`).
 */
export async function startRegistry(
  opts: { auth?: { user: string; password: string } } = {},
): Promise<LocalRegistry> {
  const bin = registryPath();
  await access(bin, constants.X_OK).catch(() => {
    throw new Error(
      `no OCI registry at ${bin}: run \`bash test/scripts/setup.sh\` (or \`pnpm cluster build-registry\`)`,
    );
  });
  const dir = await mkdtemp(join(tmpdir(), 'waggle-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let authYaml = '';
  if (opts.auth) {
    const { stdout } = await run('htpasswd', ['-Bbn', opts.auth.user, opts.auth.password]).catch((err) => {
      throw new Error(`htpasswd failed (is apache2-utils installed? run test/scripts/setup.sh): ${err}`);
    });
    await writeFile(join(dir, 'htpasswd'), stdout);
    authYaml = `auth:\n  htpasswd:\n    realm: waggle-test\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  await writeFile(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n` +
      `storage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\n` +
      `http:\n  addr: ${host}\n  secret: ${randomBytes(16).toString('hex')}\n${authYaml}`,
  );
  const proc: ChildProcess = spawn(bin, ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, OTEL_TRACES_EXPORTER: 'none' },
  });
  let stderr = '';
  proc.stderr?.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`registry exited (${proc.exitCode}): ${stderr}`);
        return fetch(`http://${host}/v2/`).then(
          (r) => r.status,
          () => 0,
        );
      },
      (status) => status === 200 || status === 401,
      `the registry on ${host}`,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const dockerConfigJson = opts.auth
    ? JSON.stringify({
        auths: {
          [host]: { auth: Buffer.from(`${opts.auth.user}:${opts.auth.password}`).toString('base64') },
        },
      })
    : undefined;
  return { host, ...(dockerConfigJson ? { dockerConfigJson } : {}), stop };
}
