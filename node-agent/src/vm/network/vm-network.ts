import { execFile, spawn } from 'node:child_process';
import { access, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { CleanupStack } from '../cleanup-stack.ts';
import { DnsForwarder } from './dns-forwarder.ts';
import {
  type EgressMode,
  hostRuleset,
  hostTableName,
  NS_DOMAIN_SET,
  NS_TABLE,
  namespaceRuleset,
} from './egress-rules.ts';
import { SubnetAllocator, subnetOf } from './subnets.ts';
import type { VMNetwork } from './vm-network-record.ts';

export type { VMNetwork } from './vm-network-record.ts';

const run = promisify(execFile);

export interface VMNetworksOptions {
  /** WAGGLE_VM_NETWORK_CIDR: the /30 links of this agent's VMs come from it. */
  cidr: string;
  /** Admin allow-list (reachable although inside a denied range). */
  allowCidrs: readonly string[];
  /** Denied on top of the private/special ranges and the node's own addresses (pod/Service CIDRs). */
  denyCidrs: readonly string[];
  /** Resolvers the DNS forwarders relay to (the node's, by default). */
  upstreams: readonly string[];
  log: Logger;
}

/** Feeds `input` to a command's stdin; rejects with its stderr. */
function runWithInput(cmd: string, args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || `exit ${code}`}`)),
    );
    child.stdin.end(input);
  });
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/**
 * Per-VM network namespaces (docs/adr/0009-vm-network-boundary.md). Each VM's QEMU runs in its
 * own namespace, linked to the node by a veth /30; QEMU's user-mode stack makes the guest's
 * connections sockets of that namespace, where nftables decides what they may reach. The
 * guest's 10.0.2.2 (QEMU's alias for "the host's loopback") is the namespace's own loopback,
 * which is down: nothing of the node listens there.
 */
export class VMNetworks {
  readonly #o: VMNetworksOptions;
  readonly #subnets: SubnetAllocator;
  readonly #dns = new Map<string, DnsForwarder>();

  constructor(opts: VMNetworksOptions) {
    this.#o = opts;
    this.#subnets = new SubnetAllocator(opts.cidr);
  }

  get cidr(): string {
    return this.#o.cidr;
  }

  /** Node-side set-up, idempotent: IPv4 forwarding and the NAT/filter table of this VM network. */
  async init(): Promise<void> {
    const forward = '/proc/sys/net/ipv4/ip_forward';
    await writeFile(forward, '1\n').catch((err: Error) => {
      throw new Error(`cannot enable IPv4 forwarding (${forward}): ${err.message}; the agent needs root`);
    });
    await runWithInput('nft', ['-f', '-'], hostRuleset(this.#o.cidr)).catch((err: Error) => {
      throw new Error(`cannot install the node's nftables table for ${this.#o.cidr}: ${err.message}`);
    });
  }

  /** Removes the node-side table (tests; a production agent leaves it for its running VMs). */
  async removeHostTable(): Promise<void> {
    await run('nft', ['delete', 'table', 'ip', hostTableName(this.#o.cidr)]).catch(() => undefined);
  }

  /** The node's own addresses: a guest must not reach them (kubelet, etcd, NodePorts, …). */
  #nodeAddresses(): string[] {
    return Object.values(networkInterfaces())
      .flatMap((list) => list ?? [])
      .filter((a) => a.family === 'IPv4')
      .map((a) => `${a.address}/32`);
  }

  /**
   * Creates the namespace, veth, addresses, firewall and DNS forwarder of one VM, registering the
   * undo of each on `cleanup` as soon as it exists.
   */
  async create(
    vmId: string,
    opts: { mode: EgressMode; allowDomains?: readonly string[] },
    cleanup: CleanupStack,
  ): Promise<VMNetwork> {
    const sub = this.#subnets.allocate();
    cleanup.push('vm subnet', () => this.#subnets.release(sub.slot));
    const net: VMNetwork = {
      slot: sub.slot,
      hostIP: sub.hostIP,
      nsIP: sub.nsIP,
      netns: `wgl-${sub.id}`,
      hostIface: `wgl-${sub.id}`,
      mode: opts.mode,
      allowDomains: [...(opts.allowDomains ?? [])],
    };
    const log = this.#o.log.child({ vmId, netns: net.netns });
    // A crash between these steps can leave a namespace behind; start from nothing.
    await this.#removeLinks(net);
    await run('ip', ['netns', 'add', net.netns]);
    cleanup.push('netns', () => this.#removeLinks(net));
    await runWithInput(
      'ip',
      ['-batch', '-'],
      [
        `link add ${net.hostIface} type veth peer name eth0 netns ${net.netns}`,
        `addr add ${net.hostIP}/30 dev ${net.hostIface}`,
        `link set ${net.hostIface} up`,
        '',
      ].join('\n'),
    );
    await runWithInput(
      'ip',
      ['-n', net.netns, '-batch', '-'],
      [
        `addr add ${net.nsIP}/30 dev eth0`,
        'link set eth0 up',
        // Up, so that the guest's 10.0.2.2 (QEMU's alias for loopback) is refused at once.
        'link set lo up',
        `route add default via ${net.hostIP}`,
        '',
      ].join('\n'),
    );
    // No IPv6 in the namespace: a guest reaches nothing over IPv6 (not even the node's link).
    await run('ip', [
      'netns',
      'exec',
      net.netns,
      'sh',
      '-c',
      'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6',
    ]);
    await runWithInput(
      'ip',
      ['netns', 'exec', net.netns, 'nft', '-f', '-'],
      namespaceRuleset({
        mode: net.mode,
        hostIP: net.hostIP,
        nsIP: net.nsIP,
        deny: [...this.#nodeAddresses(), this.#o.cidr, ...this.#o.denyCidrs],
        allow: this.#o.allowCidrs,
      }),
    );
    if (net.mode !== 'none') {
      await this.#startDns(vmId, net);
      cleanup.push('dns forwarder', () => this.#stopDns(vmId));
    }
    log.debug({ hostIP: net.hostIP, nsIP: net.nsIP, mode: net.mode }, 'vm network ready');
    return net;
  }

  /**
   * The resolv.conf QEMU must see: its user network relays the guest's DNS (10.0.2.3) to the
   * first nameserver there, which must be this VM's forwarder (the node's own resolver may be
   * on loopback or in a private range, both out of the guest's reach).
   */
  resolvConf(net: VMNetwork): string {
    return `nameserver ${net.hostIP}\n`;
  }

  /** The command prefix that runs a process (QEMU) inside the VM's namespace. */
  execPrefix(net: VMNetwork): string[] {
    return ['ip', 'netns', 'exec', net.netns];
  }

  /**
   * After an agent restart: keeps the slot, gives the namespace its name back if the agent's
   * container (and with it the /run/netns mount) was replaced, and restarts the DNS forwarder.
   */
  async adopt(vmId: string, net: VMNetwork, qemuPid: number): Promise<void> {
    this.#subnets.reserve(net.slot);
    if (!(await exists(`/run/netns/${net.netns}`))) {
      await run('ip', ['netns', 'attach', net.netns, String(qemuPid)]);
    }
    if (net.mode !== 'none') await this.#startDns(vmId, net);
  }

  /**
   * After an agent restart, for a VM with no process (suspended): keeps the slot and restarts
   * the DNS forwarder. Rejects if the namespace is gone (nothing held it: the agent's
   * container, and with it the /run/netns mount, was replaced).
   */
  async adoptIdle(vmId: string, net: VMNetwork): Promise<void> {
    if (!(await exists(`/run/netns/${net.netns}`))) {
      throw new Error(`network namespace ${net.netns} is gone`);
    }
    this.#subnets.reserve(net.slot);
    if (net.mode !== 'none') await this.#startDns(vmId, net);
  }

  /** Removes everything of one VM's network (after its QEMU is gone). Idempotent. */
  async destroy(vmId: string, net: VMNetwork): Promise<void> {
    this.#stopDns(vmId);
    await this.#removeLinks(net);
    this.#subnets.release(net.slot);
  }

  /** Namespaces of this VM network that no VM owns (left by a crash): removed. */
  async reapOrphans(owned: ReadonlySet<string>): Promise<string[]> {
    const { stdout } = await run('ip', ['-j', 'netns', 'list']).catch(() => ({ stdout: '[]' }));
    const names = (JSON.parse(stdout || '[]') as Array<{ name: string }>).map((n) => n.name);
    const reaped: string[] = [];
    for (const name of names) {
      const id = /^wgl-([0-9a-f]{8})$/.exec(name)?.[1];
      if (!id || owned.has(name)) continue;
      const slot = (Number.parseInt(id, 16) - Number.parseInt(subnetOf(this.#o.cidr, 0).id, 16)) / 4;
      const max = 2 ** (32 - Number(this.#o.cidr.split('/')[1])) / 4;
      if (!Number.isInteger(slot) || slot < 0 || slot >= max) continue; // another agent's network
      await this.#removeLinks({ netns: name, hostIface: name });
      reaped.push(name);
    }
    return reaped;
  }

  async #removeLinks(net: Pick<VMNetwork, 'netns' | 'hostIface'>): Promise<void> {
    await run('ip', ['link', 'del', net.hostIface]).catch(() => undefined);
    await run('ip', ['netns', 'del', net.netns]).catch(() => undefined);
  }

  async #startDns(vmId: string, net: VMNetwork): Promise<void> {
    this.#stopDns(vmId);
    const log = this.#o.log.child({ vmId });
    const forwarder = await DnsForwarder.listen({
      address: net.hostIP,
      upstreams: this.#o.upstreams,
      log,
      ...(net.mode === 'domains'
        ? {
            policy: {
              allowDomains: net.allowDomains,
              onResolved: (addresses: string[], ttl: number) =>
                run('ip', [
                  'netns',
                  'exec',
                  net.netns,
                  'nft',
                  'add',
                  'element',
                  'inet',
                  NS_TABLE,
                  NS_DOMAIN_SET,
                  `{ ${addresses.map((a) => `${a} timeout ${ttl}s`).join(', ')} }`,
                ]).then(() => undefined),
            },
          }
        : {}),
    });
    this.#dns.set(vmId, forwarder);
  }

  #stopDns(vmId: string): void {
    this.#dns.get(vmId)?.close();
    this.#dns.delete(vmId);
  }

  /** Stops the DNS forwarders (agent shutdown; the VMs keep running). */
  close(): void {
    for (const id of [...this.#dns.keys()]) this.#stopDns(id);
  }
}
