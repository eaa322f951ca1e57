// The host prerequisites: root, Node.js, the packages the local cluster, the node-agent and the
// guest image builds use, podman's limits, the ports the cluster listens on, disk space.
import { access, constants, readFile, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { REQUIRED_TOOLS } from '../../cluster/local-cluster.ts';
import { isPortFree } from '../../ports.ts';
import type { Check } from './check.ts';

/**
 * [tool, apt package]: an absolute path, or a name looked up on PATH (plus /usr/sbin and /sbin).
 * The local cluster's (containerd, runc, CNI, iptables, podman), the node-agent's (QEMU, the
 * network namespace tools) and the guest image build's (mmdebstrap, e2fsprogs, busybox, kmod).
 */
export const HOST_TOOLS: ReadonlyArray<readonly [string, string]> = [
  ...REQUIRED_TOOLS,
  ['qemu-system-x86_64', 'qemu-system-x86'],
  ['qemu-img', 'qemu-utils'],
  ['ip', 'iproute2'],
  ['nft', 'nftables'],
  ['mmdebstrap', 'mmdebstrap'],
  ['mkfs.ext4', 'e2fsprogs'],
  ['debugfs', 'e2fsprogs'],
  ['busybox', 'busybox-static'],
  ['depmod', 'kmod'],
  ['cpio', 'cpio'],
];

/** The executable a tool names: itself when absolute, else the first hit on PATH. */
export async function locateTool(tool: string, path = process.env.PATH ?? ''): Promise<string | undefined> {
  const candidates = tool.startsWith('/')
    ? [tool]
    : [...path.split(':').filter(Boolean), '/usr/sbin', '/sbin'].map((dir) => join(dir, tool));
  for (const p of candidates) {
    if (
      await access(p, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return p;
  }
  return undefined;
}

/** The apt packages to install for the tools `locate` cannot find, each named once. */
export async function missingPackages(
  tools: ReadonlyArray<readonly [string, string]>,
  locate: (tool: string) => Promise<string | undefined> = (t) => locateTool(t),
): Promise<string[]> {
  const missing = new Set<string>();
  for (const [tool, pkg] of tools) if (!(await locate(tool))) missing.add(pkg);
  return [...missing];
}

export async function hostChecks(): Promise<Check[]> {
  const root = process.getuid?.() === 0;
  const node26 = process.versions.node.startsWith('26.');
  const missing = await missingPackages(HOST_TOOLS);
  const ulimits = (await readFile('/etc/containers/containers.conf', 'utf8').catch(() => '')).includes(
    'default_ulimits',
  );
  return [
    {
      ok: root,
      what: 'running as root',
      detail: root ? 'yes' : 'the local cluster needs root (kubelet, containerd, iptables): use sudo',
    },
    {
      ok: node26,
      what: 'Node.js 26',
      detail: `this is Node ${process.versions.node}${node26 ? '' : '; run bash test/scripts/setup.sh'}`,
    },
    {
      ok: missing.length === 0,
      what: 'host packages',
      detail: missing.length
        ? `missing: ${missing.join(', ')} — bash test/scripts/setup.sh installs them`
        : 'containerd (+ ctr), runc, CNI plugins, iptables, conntrack, podman, QEMU, iproute2, nftables, mmdebstrap, e2fsprogs, busybox, kmod, cpio',
    },
    {
      ok: ulimits ? true : 'warn',
      what: 'podman limits',
      detail: ulimits
        ? 'default_ulimits set'
        : 'no default_ulimits in /etc/containers/containers.conf; containers may fail with "error setting rlimit" (setup.sh sets it)',
    },
  ];
}

/**
 * The ports the local cluster listens on: the MCP forward, apiserver, etcd, kubelet, kube-proxy
 * health, controller-manager, scheduler, and the node-agent's API and ops ports (host network).
 * Taken ones are fine while the local cluster itself runs.
 */
export async function portChecks(mcpPort: number, clusterRunning: boolean): Promise<Check[]> {
  const checks: Check[] = [];
  for (const port of [mcpPort, 6443, 12379, 12380, 10250, 10256, 10257, 10259, 7443, 7444]) {
    const free = await isPortFree(port);
    checks.push({
      ok: free || clusterRunning,
      what: `port ${port}`,
      detail: free
        ? 'free'
        : clusterRunning
          ? 'in use by the running local cluster'
          : 'in use by another program; stop it (or set WAGGLE_UP_PORT for the MCP port)',
    });
  }
  return checks;
}

/** Free space where images, guest disks and etcd go: 10 GiB fine, 4 GiB tight, less too little. */
export async function diskChecks(dirs: readonly string[]): Promise<Check[]> {
  const checks: Check[] = [];
  for (const dir of dirs) {
    const fs = await statfs(dir).catch(() => undefined);
    const gib = fs ? (fs.bavail * fs.bsize) / 2 ** 30 : 0;
    checks.push({
      ok: gib >= 10 ? true : gib >= 4 ? 'warn' : false,
      what: `disk space in ${dir}`,
      detail: `${gib.toFixed(1)} GiB free${gib < 10 ? ' (images, guest disks and etcd need about 10 GiB)' : ''}`,
    });
  }
  return checks;
}
