/**
 * nftables rulesets for VM networking. Pure: text in, text out (applied with `nft -f -`).
 *
 * Each VM's QEMU runs in its own network namespace; QEMU's user-mode network stack (slirp) turns
 * the guest's connections into sockets of that namespace, so these rules see every connection a
 * guest makes, with the real destination. The namespace's only link is a veth /30 to the node.
 */

/**
 * Never reachable from a guest unless the admin allow-lists a CIDR: private, shared, loopback,
 * link-local, multicast and reserved ranges. Documentation and benchmarking ranges stay open on
 * purpose: some networks (fake-IP DNS, test mirrors) put public services there.
 */
export const DEFAULT_DENIED_IPV4 = [
  '0.0.0.0/8', // "this network"
  '10.0.0.0/8', // RFC 1918
  '100.64.0.0/10', // shared address space (carrier-grade NAT, many cloud-internal services)
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local: cloud instance metadata services
  '172.16.0.0/12', // RFC 1918
  '192.0.0.0/24', // IETF protocol assignments
  '192.168.0.0/16', // RFC 1918
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, broadcast
] as const;

export type EgressMode = 'none' | 'all' | 'domains';

export interface NamespaceRulesInput {
  mode: EgressMode;
  /** The node's end of the veth (DNS forwarder). */
  hostIP: string;
  /** The namespace's end (SSH forward). */
  nsIP: string;
  /** Denied on top of the defaults: the node's own addresses, the VM network, pod/Service CIDRs. */
  deny: readonly string[];
  /** Admin allow-list (WAGGLE_EGRESS_ALLOW_CIDRS): reachable even inside a denied range. */
  allow: readonly string[];
}

/** The table inside a VM's namespace. */
export const NS_TABLE = 'waggle';
/** Set of addresses the DNS forwarder has resolved for allowed domains (mode `domains`). */
export const NS_DOMAIN_SET = 'domains';

const v4 = (cidrs: readonly string[]) => cidrs.filter((c) => !c.includes(':'));
const elements = (cidrs: readonly string[]) =>
  cidrs.length > 0 ? ` elements = { ${[...new Set(cidrs)].join(', ')} }` : '';

/** The namespace's firewall: in, only the node's SSH; out, DNS to the node and what the mode allows. */
export function namespaceRuleset(r: NamespaceRulesInput): string {
  const deny = v4([...DEFAULT_DENIED_IPV4, ...r.deny]);
  const allow = v4(r.allow);
  const out: string[] = ['ct state established,related accept'];
  if (r.mode !== 'none') {
    out.push(`oifname "eth0" ip daddr ${r.hostIP} udp dport 53 accept`);
    if (allow.length > 0) out.push('oifname "eth0" ip daddr @allow accept');
    out.push('ip daddr @deny meta l4proto tcp reject with tcp reset', 'ip daddr @deny drop');
    if (r.mode === 'all') out.push('oifname "eth0" meta nfproto ipv4 accept');
    else out.push(`oifname "eth0" ip daddr @${NS_DOMAIN_SET} accept`);
  }
  out.push('meta l4proto tcp reject with tcp reset', 'drop');
  return [
    `table inet ${NS_TABLE} {`,
    `  set deny { type ipv4_addr; flags interval; auto-merge;${elements(deny)} }`,
    `  set allow { type ipv4_addr; flags interval; auto-merge;${elements(allow)} }`,
    `  set ${NS_DOMAIN_SET} { type ipv4_addr; flags timeout; }`,
    '  chain input {',
    '    type filter hook input priority filter; policy drop;',
    '    ct state established,related accept',
    `    iifname "eth0" ip saddr ${r.hostIP} ip daddr ${r.nsIP} tcp dport 22 accept`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy drop;',
    '  }',
    '  chain output {',
    // Refused at once: a TCP connect gets a reset (a dropped or ICMP-rejected SYN would leave it
    // retrying until its timeout), a UDP send fails with EPERM; QEMU passes both on to the guest.
    '    type filter hook output priority filter; policy drop;',
    ...out.map((l) => `    ${l}`),
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Name of the node-side table of one agent's VM network (several agents may share a host). */
export function hostTableName(cidr: string): string {
  return `waggle_${cidr.replace(/[./]/g, '_')}`;
}

/**
 * The node-side table: masquerade the VM network's traffic to the outside, let it be forwarded,
 * and accept nothing from it addressed to the node itself but DNS to the forwarder (defence in
 * depth: the namespace's own rules already refuse the rest).
 */
export function hostRuleset(cidr: string): string {
  const t = hostTableName(cidr);
  return [
    `table ip ${t}`,
    `delete table ip ${t}`,
    `table ip ${t} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${cidr} ip daddr != ${cidr} masquerade`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    `    ip daddr ${cidr} ct state established,related accept`,
    `    ip saddr ${cidr} ip daddr ${cidr} drop`,
    `    ip saddr ${cidr} accept`,
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    ip saddr ${cidr} ct state established,related accept`,
    `    ip saddr ${cidr} udp dport 53 accept`,
    `    ip saddr ${cidr} drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}
