import { execFile } from 'node:child_process';
import { access, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLUSTER } from './layout.ts';

const run = promisify(execFile);

/** Runs a command; returns stdout, or '' when it fails and `allowFail` is set. */
export async function sh(cmd: string, args: string[], allowFail = false): Promise<string> {
  try {
    return (await run(cmd, args, { maxBuffer: 16 << 20 })).stdout;
  } catch (err) {
    if (allowFail) return '';
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr || e.message).trim()}`);
  }
}

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
const BRIDGE_NF_CALL = '/proc/sys/net/bridge/bridge-nf-call-iptables';
const CNI_STATE = '/var/lib/cni';

/** What the host had before the first `up`, so `down` can put it back. */
interface HostBefore {
  ipForward: string;
  bridgeNfCallIptables?: string;
  cniStateExisted: boolean;
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * The node IP as an extra address on `lo`, IP forwarding on. The first time (no record in
 * `base` yet) the sysctls' previous values are recorded there, for {@link cleanHost}.
 */
export async function ensureNodeNetwork(base: string): Promise<void> {
  const record = join(base, 'host-before.json');
  if (!(await exists(record))) {
    const before: HostBefore = {
      ipForward: (await readFile(IP_FORWARD, 'utf8')).trim(),
      cniStateExisted: await exists(CNI_STATE),
    };
    const nf = await readFile(BRIDGE_NF_CALL, 'utf8').catch(() => undefined);
    if (nf !== undefined) before.bridgeNfCallIptables = nf.trim();
    await writeFile(record, `${JSON.stringify(before)}\n`);
  }
  const addrs = await sh('ip', ['-o', '-4', 'addr', 'show', 'dev', 'lo']);
  if (!addrs.includes(` ${CLUSTER.nodeIP}/`))
    await sh('ip', ['addr', 'add', `${CLUSTER.nodeIP}/32`, 'dev', 'lo']);
  await writeFile(IP_FORWARD, '1\n');
  // Bridged pod traffic must traverse iptables for Services (needs br_netfilter; best effort).
  await sh('modprobe', ['br_netfilter'], true);
  await writeFile(BRIDGE_NF_CALL, '1\n').catch(() => undefined);
}

/** Cgroups the cluster's pods and VMs run in: `kubepods` and the VM cgroup, per hierarchy. */
export async function clusterCgroups(): Promise<string[]> {
  const out: string[] = [];
  for (const ctrl of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    for (const name of ['kubepods', CLUSTER.vmCgroup]) {
      const dir = join('/sys/fs/cgroup', ctrl, name);
      if (await exists(join(dir, 'cgroup.procs'))) out.push(dir);
    }
  }
  return out;
}

/** Processes in the cluster's cgroups: containers whose shim is gone, QEMUs the agent started. */
export async function clusterCgroupPids(): Promise<number[]> {
  const pids = new Set<number>();
  for (const root of await clusterCgroups()) {
    for (const f of (await sh('find', [root, '-name', 'cgroup.procs'], true)).split('\n').filter(Boolean)) {
      for (const pid of (await readFile(f, 'utf8').catch(() => '')).split('\n').filter(Boolean))
        pids.add(Number(pid));
    }
  }
  return [...pids].sort((a, b) => a - b);
}

/** SIGKILLs each process (gone ones are fine), then gives the kernel a moment to reap them. */
export async function killPids(pids: readonly number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  if (pids.length) await new Promise((r) => setTimeout(r, 500));
}

/** The pod network's address leases and cached results under /var/lib/cni. */
async function cniState(): Promise<string[]> {
  const out: string[] = [];
  const net = join(CNI_STATE, 'networks', CLUSTER.cniNetwork);
  if (await exists(net)) out.push(net);
  const results = join(CNI_STATE, 'results');
  for (const f of await readdir(results).catch(() => [] as string[]))
    if (f.startsWith(`${CLUSTER.cniNetwork}-`)) out.push(join(results, f));
  return out;
}

/** Splits an `iptables -S` line into arguments (double-quoted comments keep their spaces). */
export function splitRule(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line))
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] as string));
  return out;
}

/** iptables chains in `table` whose names start with one of `prefixes`. */
async function chains(table: string, prefixes: string[]): Promise<string[]> {
  const out = await sh('iptables', ['-w', '-t', table, '-S'], true);
  return [
    ...new Set(
      out
        .split('\n')
        .filter((l) => l.startsWith('-N '))
        .map((l) => l.slice(3).trim())
        .filter((c) => prefixes.some((p) => c.startsWith(p))),
    ),
  ];
}

/** Chains, rules, bridge, netns and the node address the cluster created; what is left of each. */
export async function hostLeftovers(paths: { base: string; run: string }) {
  const mounts = (await readFile('/proc/mounts', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(paths.base) || m.startsWith(paths.run));
  // cni-*: pod sandboxes; wgl-*: node-agent VM namespaces (their host veth has the same name).
  const netns = (await readdir('/run/netns').catch(() => [] as string[])).filter(
    (n) => n.startsWith('cni-') || n.startsWith('wgl-'),
  );
  // The node-agents' NAT/filter tables for their VM networks.
  const nftTables = (await sh('nft', ['list', 'tables'], true))
    .split('\n')
    .map((l) => /^table ip (waggle_\S+)$/.exec(l.trim())?.[1])
    .filter((t): t is string => t !== undefined);
  const link = await sh('ip', ['-o', 'link', 'show', CLUSTER.bridge], true);
  const addr = (await sh('ip', ['-o', '-4', 'addr', 'show', 'dev', 'lo'])).includes(` ${CLUSTER.nodeIP}/`);
  const iptables: string[] = [];
  for (const table of ['nat', 'filter', 'mangle']) {
    for (const c of await chains(table, ['KUBE-', 'CNI-'])) iptables.push(`${table}/${c}`);
  }
  return {
    mounts,
    netns,
    nftTables,
    bridge: link.trim() !== '',
    nodeAddress: addr,
    iptables,
    cgroups: await clusterCgroups(),
    processes: await clusterCgroupPids(),
    cniState: await cniState(),
  };
}

/** Removes what the cluster changed on the host (after every component has stopped). */
export async function cleanHost(
  paths: { base: string; run: string },
  log: (l: string) => void,
): Promise<void> {
  const left = await hostLeftovers(paths);
  for (const m of left.mounts.sort((a, b) => b.length - a.length)) await sh('umount', ['-l', m], true);
  for (const n of left.netns) {
    if (n.startsWith('wgl-')) await sh('ip', ['link', 'delete', n], true);
    await sh('ip', ['netns', 'delete', n], true);
  }
  for (const t of left.nftTables) await sh('nft', ['delete', 'table', 'ip', t], true);
  if (left.bridge) await sh('ip', ['link', 'delete', CLUSTER.bridge], true);
  // Rules that jump into our chains live in built-in chains: drop those rules first, then the chains.
  for (const table of ['nat', 'filter', 'mangle']) {
    const rules = (await sh('iptables', ['-w', '-t', table, '-S'], true))
      .split('\n')
      .filter((l) => l.startsWith('-A ') && / -j (KUBE-|CNI-)/.test(l) && !/^-A (KUBE-|CNI-)/.test(l));
    for (const r of rules)
      await sh('iptables', ['-w', '-t', table, ...splitRule(r.replace(/^-A /, '-D '))], true);
    // Rules masquerading the pod network that the bridge plugin added to POSTROUTING.
    const own = await chains(table, ['KUBE-', 'CNI-']);
    for (const c of own) await sh('iptables', ['-w', '-t', table, '-F', c], true);
    for (const c of own) await sh('iptables', ['-w', '-t', table, '-X', c], true);
  }
  if (left.nodeAddress) await sh('ip', ['addr', 'del', `${CLUSTER.nodeIP}/32`, 'dev', 'lo'], true);
  await killPids(left.processes);
  for (const f of left.cniState) await rm(f, { recursive: true, force: true });
  // Empty cgroups go deepest first (a cgroup with children cannot be removed).
  for (const root of left.cgroups) {
    const dirs = (await sh('find', [root, '-depth', '-type', 'd'], true)).split('\n').filter(Boolean);
    for (const d of dirs) await rmdir(d).catch(() => undefined);
  }
  const before = await readFile(join(paths.base, 'host-before.json'), 'utf8')
    .then((t) => JSON.parse(t) as HostBefore)
    .catch(() => undefined);
  if (before) {
    await writeFile(IP_FORWARD, `${before.ipForward}\n`).catch(() => undefined);
    if (before.bridgeNfCallIptables !== undefined)
      await writeFile(BRIDGE_NF_CALL, `${before.bridgeNfCallIptables}\n`).catch(() => undefined);
    if (!before.cniStateExisted) await rm(CNI_STATE, { recursive: true, force: true });
  }
  log(
    `removed ${left.mounts.length} mounts, ${left.netns.length} network namespaces, ${left.nftTables.length} nftables tables, ${left.iptables.length} iptables chains${left.bridge ? `, bridge ${CLUSTER.bridge}` : ''}${left.nodeAddress ? `, address ${CLUSTER.nodeIP}` : ''}, ${left.cgroups.length} cgroups, ${left.cniState.length} CNI state entries${before ? '; restored ip_forward and bridge-nf-call-iptables' : ''}`,
  );
}
