import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { httpsGet, waitForHttpsOk } from './https-probe.ts';
import { ensureKubeBinaries } from './kube-binaries.ts';
import { writeKubeconfig } from './kubeconfig.ts';
import { apiserverServingRequest, createCA, serviceAccountKeyPair, writeCertPair } from './pki.ts';
import { freePorts } from './ports.ts';
import { type Component, startComponent, tailLog } from './processes.ts';

const run = promisify(execFile);

export const CONTROL_PLANE_DIR_PREFIX = 'waggle-cp-';
export const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/12';
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

export interface ControlPlaneOptions {
  /** Progress lines (building binaries, starting components). */
  log?: (line: string) => void;
  /** How long to wait for kube-apiserver /readyz. */
  readyTimeoutMs?: number;
  /** Extra kube-apiserver flags (`--name=value`). */
  apiserverArgs?: string[];
}

export interface ControlPlane {
  /** Private temp dir holding certificates, etcd data, logs and the kubeconfig. */
  dir: string;
  kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  server: string;
  /** `gitVersion` the apiserver reports, e.g. v1.36.3. */
  serverVersion: string;
  /** Milliseconds from start to /readyz answering 200. */
  startupMs: number;
  binaries: { etcd: string; 'kube-apiserver': string; kubectl: string };
  /** Runs the cached kubectl against this control plane. Never throws on a non-zero exit. */
  kubectl(args: string[], input?: string): Promise<{ stdout: string; stderr: string; code: number }>;
  /** Stops both servers and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Kills control planes whose owning process died without stopping them (a crashed test run)
 * and removes their directories. Each control plane dir records its owner's pid.
 */
export async function reapStaleControlPlanes(log?: (line: string) => void): Promise<number> {
  const base = tmpdir();
  let reaped = 0;
  for (const entry of await readdir(base).catch(() => [] as string[])) {
    if (!entry.startsWith(CONTROL_PLANE_DIR_PREFIX)) continue;
    const dir = join(base, entry);
    const owner = Number((await readFile(join(dir, 'owner.pid'), 'utf8').catch(() => '')).trim());
    if (owner && isAlive(owner)) continue;
    for (const pid of await pidsMentioning(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await rm(dir, { recursive: true, force: true });
    log?.(`removed stale control plane ${dir}`);
    reaped++;
  }
  return reaped;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids whose command line mentions `needle` (from /proc). */
export async function pidsMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(needle)) pids.push(Number(entry));
  }
  return pids;
}

/** Starts etcd and kube-apiserver on loopback, ready for clients. */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? (() => undefined);
  const t0 = Date.now();
  const binaries = await ensureKubeBinaries(['etcd', 'kube-apiserver', 'kubectl'], { log });
  await reapStaleControlPlanes(log);

  const dir = await mkdtemp(join(tmpdir(), CONTROL_PLANE_DIR_PREFIX));
  await writeFile(join(dir, 'owner.pid'), `${process.pid}\n`);
  const pki = join(dir, 'pki');
  await mkdir(pki, { mode: 0o700 });
  const components: Component[] = [];
  let stopped = false;

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const c of components.reverse()) await c.stop();
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const tStart = Date.now();
    const [etcdClient, etcdPeer, securePort] = (await freePorts(3)) as [number, number, number];
    const ca = await createCA('waggle-test-ca');
    await writeFile(join(pki, 'ca.crt'), ca.certPem);
    const serving = await writeCertPair(
      pki,
      'apiserver',
      await ca.issue(apiserverServingRequest(['127.0.0.1', '10.96.0.1'])),
    );
    const admin = await ca.issue({ cn: 'waggle-admin', orgs: ['system:masters'], usage: 'client' });
    const sa = serviceAccountKeyPair();
    await writeFile(join(pki, 'sa.pub'), sa.publicPem);
    await writeFile(join(pki, 'sa.key'), sa.privatePem, { mode: 0o600 });

    log(`starting etcd on 127.0.0.1:${etcdClient}`);
    const etcd = await startComponent({
      name: 'etcd',
      command: binaries.etcd,
      args: [
        '--name=waggle',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=waggle=http://127.0.0.1:${etcdPeer}`,
        '--unsafe-no-fsync=true', // throw-away data: durability buys nothing, fsync costs seconds
        '--log-level=warn',
      ],
      logPath: join(dir, 'etcd.log'),
    });
    components.push(etcd);

    const server = `https://127.0.0.1:${securePort}`;
    log(`starting kube-apiserver on ${server}`);
    const apiserver = await startComponent({
      name: 'kube-apiserver',
      command: binaries['kube-apiserver'],
      args: [
        `--etcd-servers=http://127.0.0.1:${etcdClient}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${securePort}`,
        `--cert-dir=${join(dir, 'apiserver-certs')}`,
        `--tls-cert-file=${serving.cert}`,
        `--tls-private-key-file=${serving.key}`,
        `--client-ca-file=${join(pki, 'ca.crt')}`,
        `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
        `--service-account-key-file=${join(pki, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        '--authorization-mode=RBAC',
        '--allow-privileged=true',
        ...(opts.apiserverArgs ?? []),
      ],
      logPath: join(dir, 'kube-apiserver.log'),
    });
    components.push(apiserver);

    const tls = { ca: ca.certPem, cert: admin.certPem, key: admin.keyPem };
    await waitForHttpsOk(`${server}/readyz`, tls, {
      timeoutMs: opts.readyTimeoutMs ?? 60_000,
      abort: Promise.race([etcd.failure, apiserver.failure]),
    }).catch(async (err: Error) => {
      if (err.name === 'ComponentExitedError') throw err;
      throw new Error(
        `${err.message}\n--- kube-apiserver log (${apiserver.logPath}):\n${await tailLog(apiserver.logPath)}` +
          `\n--- etcd log:\n${await tailLog(etcd.logPath, 10)}`,
      );
    });
    const startupMs = Date.now() - tStart;
    const version = JSON.parse((await httpsGet(`${server}/version`, tls)).body) as { gitVersion: string };

    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeKubeconfig(kubeconfigPath, {
      server,
      caPem: ca.certPem,
      user: 'waggle-admin',
      certPem: admin.certPem,
      keyPem: admin.keyPem,
    });
    log(`control plane ready in ${(startupMs / 1000).toFixed(1)} s (total with setup ${Date.now() - t0} ms)`);

    return {
      dir,
      kubeconfigPath,
      server,
      serverVersion: version.gitVersion,
      startupMs,
      binaries,
      kubectl: (args, input) => kubectl(binaries.kubectl, kubeconfigPath, args, input),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function kubectl(
  bin: string,
  kubeconfigPath: string,
  args: string[],
  input?: string,
): Promise<{ stdout: string; stderr: string; code: number }> {
  const child = run(bin, args, { env: { ...process.env, KUBECONFIG: kubeconfigPath }, maxBuffer: 64 << 20 });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  try {
    const { stdout, stderr } = await child;
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    return {
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? String(err),
      code: typeof e.code === 'number' ? e.code : 1,
    };
  }
}
