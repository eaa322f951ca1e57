import { execFile } from 'node:child_process';
import { access, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pidsMentioning } from '../control-plane.ts';
import { ensureKubeBinaries, KUBE_COMPONENTS } from '../kube-binaries.ts';
import { tailLog } from '../processes.ts';
import {
  apiserverDaemon,
  controllerManagerDaemon,
  etcdDaemon,
  kubeletDaemon,
  kubeProxyDaemon,
  schedulerDaemon,
} from './components.ts';
import { containerdDaemon, ensurePauseImage, writeContainerdFiles } from './containerd.ts';
import { assertAlive, type DaemonSpec, daemonPid, ensureDaemon, stopDaemon } from './daemons.ts';
import { guestRegistryDaemon } from './guest-registry.ts';
import { cleanHost, clusterCgroupPids, ensureNodeNetwork, hostLeftovers, killPids, sh } from './host.ts';
import { CLUSTER, type ClusterPaths, clusterPaths } from './layout.ts';
import { apiserverURL, ensureClusterPki, ensureEtcdPki, etcdRequest } from './pki.ts';

const run = promisify(execFile);

export interface LocalCluster {
  paths: ClusterPaths;
  kubeconfigPath: string;
  server: string;
  kubectl: string;
  /** Runs the cluster's kubectl; throws with stderr on failure. */
  k(args: string[], input?: string): Promise<string>;
}

/** Which step failed, with the component's last log lines. */
export class ClusterStepError extends Error {
  override name = 'ClusterStepError';
}

/** Host programs the local cluster needs, with the Debian package that brings each. */
export const REQUIRED_TOOLS = [
  ['/usr/bin/containerd', 'containerd'],
  ['/usr/sbin/runc', 'runc'],
  ['/usr/bin/ctr', 'containerd'],
  ['/usr/lib/cni/bridge', 'containernetworking-plugins'],
  ['/usr/sbin/iptables', 'iptables'],
  ['/usr/sbin/conntrack', 'conntrack'],
  ['/usr/bin/podman', 'podman'],
] as const;

async function preflight(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new ClusterStepError('the local cluster needs root (kubelet, containerd, iptables)');
  const missing: string[] = [];
  for (const [path, pkg] of REQUIRED_TOOLS) {
    if (
      !(await access(path).then(
        () => true,
        () => false,
      ))
    )
      missing.push(`${path} (apt package ${pkg})`);
  }
  if (missing.length) {
    throw new ClusterStepError(
      `missing host tools: ${missing.join(', ')}; run bash test/scripts/setup.sh (it installs them)`,
    );
  }
}

/** A kubectl runner for one kubeconfig; throws with stderr on failure. */
export const kubectlFor = (bin: string, kubeconfig: string) => async (args: string[], input?: string) => {
  const child = run(bin, args, { env: { ...process.env, KUBECONFIG: kubeconfig }, maxBuffer: 64 << 20 });
  if (input !== undefined) child.child.stdin?.end(input);
  try {
    return (await child).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`kubectl ${args.join(' ')}: ${(e.stderr || e.message).trim()}`);
  }
};

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number, spec?: DaemonSpec) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    if (spec) await assertAlive(spec);
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new ClusterStepError(
    `timed out after ${timeoutMs / 1000} s waiting for ${what}` +
      (spec ? `; last lines of ${spec.logPath}:\n${await tailLog(spec.logPath, 25)}` : ''),
  );
}

/**
 * Brings up (or confirms) the single-node cluster: containerd with a local pause image, etcd,
 * kube-apiserver, controller-manager, scheduler, kubelet and kube-proxy, all v1.36.3 from the
 * cached Go build. Idempotent: running components are kept, dead ones restarted, so a second
 * `up` after a crash works. Each step reports progress; a failure names the step and shows the
 * component's last log lines.
 */
export async function clusterUp(opts: { log?: (line: string) => void } = {}): Promise<LocalCluster> {
  const log = opts.log ?? (() => undefined);
  const p = clusterPaths();
  const t0 = Date.now();
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    try {
      const r = await fn();
      log(`✓ ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
      return r;
    } catch (err) {
      throw new ClusterStepError(`cluster up: step "${name}" failed: ${(err as Error).message}`);
    }
  };

  await step('preflight', preflight);
  const bins = await step('kubernetes binaries', () => ensureKubeBinaries(KUBE_COMPONENTS, { log }));
  for (const d of [p.base, p.run, p.logs, p.pids, p.config, p.kubelet, p.kubeletPods])
    await mkdir(d, { recursive: true });
  await step('certificates', async () => {
    await ensureClusterPki(p);
    await ensureEtcdPki(p);
  });
  await step('node network', () => ensureNodeNetwork(p.base));
  const containerd = containerdDaemon(p);
  await step('containerd', async () => {
    await writeContainerdFiles(p);
    await ensureDaemon(containerd);
    await waitUntil(
      'the containerd socket',
      () => access(p.containerdSocket).then(() => true),
      20_000,
      containerd,
    );
    await waitUntil(
      'containerd to answer',
      async () => (await sh('ctr', ['--address', p.containerdSocket, 'version'], true)).includes('Server'),
      20_000,
      containerd,
    );
  });
  await step('pause image', () => ensurePauseImage(p, log));
  const k = kubectlFor(bins.kubectl, p.adminKubeconfig);
  const etcd = etcdDaemon(p, bins);
  await step('etcd', async () => {
    await ensureDaemon(etcd);
    await waitUntil('etcd health', async () => (await etcdRequest(p).catch(() => 0)) === 200, 30_000, etcd);
  });
  const apiserver = apiserverDaemon(p, bins);
  await step('kube-apiserver', async () => {
    await ensureDaemon(apiserver);
    await waitUntil(
      'kube-apiserver /readyz',
      async () => (await k(['get', '--raw', '/readyz'])).trim() === 'ok',
      90_000,
      apiserver,
    );
  });
  for (const spec of [controllerManagerDaemon(p, bins), schedulerDaemon(p, bins)]) {
    await step(spec.name, async () => {
      await ensureDaemon(spec);
      const port = spec.name === 'kube-scheduler' ? 10259 : 10257;
      await waitUntil(
        `${spec.name} /healthz`,
        async () => (await sh('curl', ['-sk', `https://127.0.0.1:${port}/healthz`], true)).trim() === 'ok',
        60_000,
        spec,
      );
    });
  }
  const kubelet = await kubeletDaemon(p, bins);
  await step('kubelet', async () => {
    await ensureDaemon(kubelet);
    await waitUntil(
      `node ${CLUSTER.nodeName} Ready`,
      async () =>
        (await k([
          'get',
          'node',
          CLUSTER.nodeName,
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ])) === 'True',
      120_000,
      kubelet,
    );
  });
  const proxy = await kubeProxyDaemon(p, bins);
  await step('kube-proxy', async () => {
    await ensureDaemon(proxy);
    await waitUntil(
      'kube-proxy /healthz',
      async () => (await fetch('http://127.0.0.1:10256/healthz')).ok,
      60_000,
      proxy,
    );
  });
  await step('default ServiceAccount', () =>
    waitUntil(
      'the default ServiceAccount',
      async () => (await k(['get', 'serviceaccount', 'default', '-o', 'name'])) !== '',
      60_000,
    ),
  );
  log(`cluster ready in ${((Date.now() - t0) / 1000).toFixed(1)} s — export KUBECONFIG=${p.adminKubeconfig}`);
  return { paths: p, kubeconfigPath: p.adminKubeconfig, server: apiserverURL, kubectl: bins.kubectl, k };
}

/** Every daemon, in stop order (reverse of start). */
async function allDaemons(p: ClusterPaths): Promise<DaemonSpec[]> {
  const bins = await ensureKubeBinaries(KUBE_COMPONENTS);
  return [
    await kubeProxyDaemon(p, bins),
    await kubeletDaemon(p, bins),
    schedulerDaemon(p, bins),
    controllerManagerDaemon(p, bins),
    apiserverDaemon(p, bins),
    etcdDaemon(p, bins),
    containerdDaemon(p),
  ];
}

/** The daemon spec of one cluster component (fault tests stop and restart it). */
export async function clusterDaemon(name: string): Promise<DaemonSpec> {
  const spec = (await allDaemons(clusterPaths())).find((d) => d.name === name);
  if (!spec) throw new Error(`no cluster component named ${name}`);
  return spec;
}

export interface ClusterStatus {
  components: Array<{ name: string; running: boolean; pid?: number }>;
  kubeconfigPath: string;
}

export async function clusterStatus(): Promise<ClusterStatus> {
  const p = clusterPaths();
  const exists = await access(p.base).then(
    () => true,
    () => false,
  );
  const components: ClusterStatus['components'] = [];
  for (const d of exists ? (await allDaemons(p)).reverse() : []) {
    const pid = await daemonPid(d);
    components.push({ name: d.name, running: pid !== undefined, ...(pid ? { pid } : {}) });
  }
  return { components, kubeconfigPath: p.adminKubeconfig };
}

/**
 * Stops everything `up` started — containers and their shims, every component — and removes
 * what it created on the host (mounts, network namespaces, bridge, iptables chains, the node
 * address) and its directories. Safe to run twice or after a crash.
 */
export async function clusterDown(opts: { log?: (line: string) => void } = {}): Promise<void> {
  const log = opts.log ?? (() => undefined);
  const p = clusterPaths();
  if (
    await access(p.base).then(
      () => true,
      () => false,
    )
  ) {
    const daemons = await allDaemons(p);
    // Pods first: kubelet would restart them, so stop it, then kill what runs in containerd.
    for (const d of daemons.slice(0, 2)) if (await stopDaemon(d)) log(`stopped ${d.name}`);
    const proxy = daemons[0] as DaemonSpec;
    await sh(proxy.command, ['--cleanup', `--config=${join(p.config, 'kube-proxy.yaml')}`], true);
    for (const pid of await pidsMentioning(p.containerdState)) {
      try {
        process.kill(pid, 'SIGKILL'); // containerd-shim-runc-v2 and whatever runs under it
      } catch {
        // gone
      }
    }
    const killed = await killContainerProcesses();
    if (killed) log(`killed ${killed} processes left in pod and VM cgroups`);
    for (const d of daemons.slice(2)) if (await stopDaemon(d)) log(`stopped ${d.name}`);
    if (await stopDaemon(guestRegistryDaemon(p))) log('stopped registry');
    // Helpers started beside the cluster with a pid file here (pnpm waggle up's MCP forwarder).
    for (const f of (await readdir(p.pids).catch(() => [] as string[])).filter((f) => f.endsWith('.pid'))) {
      if (await stopDaemon({ pidPath: join(p.pids, f), command: process.execPath }))
        log(`stopped ${f.slice(0, -4)}`);
    }
  }
  await cleanHost(p, log);
  await rm(p.run, { recursive: true, force: true });
  await rm(p.base, { recursive: true, force: true });
  log(`removed ${p.base} and ${p.run}`);
}

/**
 * Kills what still runs in the cluster's cgroups: containers whose shim is already gone, and the
 * QEMU processes the node-agent moved into its VM cgroup (they outlive the agent's pod by design,
 * docs/adr/0008, so nothing else stops them).
 */
async function killContainerProcesses(): Promise<number> {
  const pids = await clusterCgroupPids();
  await killPids(pids);
  return pids.length;
}

export { hostLeftovers };
