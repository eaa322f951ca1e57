import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
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

/** The node IP as an extra address on `lo`, IP forwarding on. */
export async function ensureNodeNetwork(): Promise<void> {
  const addrs = await sh('ip', ['-o', '-4', 'addr', 'show', 'dev', 'lo']);
  if (!addrs.includes(` ${CLUSTER.nodeIP}/`))
    await sh('ip', ['addr', 'add', `${CLUSTER.nodeIP}/32`, 'dev', 'lo']);
  await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
  // Bridged pod traffic must traverse iptables for Services (needs br_netfilter; best effort).
  await sh('modprobe', ['br_netfilter'], true);
  await writeFile('/proc/sys/net/bridge/bridge-nf-call-iptables', '1\n').catch(() => undefined);
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
  const netns = (await readdir('/run/netns').catch(() => [] as string[])).filter((n) => n.startsWith('cni-'));
  const link = await sh('ip', ['-o', 'link', 'show', CLUSTER.bridge], true);
  const addr = (await sh('ip', ['-o', '-4', 'addr', 'show', 'dev', 'lo'])).includes(` ${CLUSTER.nodeIP}/`);
  const iptables: string[] = [];
  for (const table of ['nat', 'filter', 'mangle']) {
    for (const c of await chains(table, ['KUBE-', 'CNI-'])) iptables.push(`${table}/${c}`);
  }
  return { mounts, netns, bridge: link.trim() !== '', nodeAddress: addr, iptables };
}

/** Removes what the cluster changed on the host (after every component has stopped). */
export async function cleanHost(
  paths: { base: string; run: string },
  log: (l: string) => void,
): Promise<void> {
  const left = await hostLeftovers(paths);
  for (const m of left.mounts.sort((a, b) => b.length - a.length)) await sh('umount', ['-l', m], true);
  for (const n of left.netns) await sh('ip', ['netns', 'delete', n], true);
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
  log(
    `removed ${left.mounts.length} mounts, ${left.netns.length} network namespaces, ${left.iptables.length} iptables chains${left.bridge ? `, bridge ${CLUSTER.bridge}` : ''}${left.nodeAddress ? `, address ${CLUSTER.nodeIP}` : ''}`,
  );
}
