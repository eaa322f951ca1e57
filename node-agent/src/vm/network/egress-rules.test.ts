import { describe, expect, it } from 'vitest';
import { DEFAULT_DENIED_IPV4, hostRuleset, hostTableName, namespaceRuleset } from './egress-rules.ts';

const base = { hostIP: '10.254.0.1', nsIP: '10.254.0.2', deny: ['192.0.2.2/32'], allow: [] };
const output = (rules: string) =>
  rules
    .slice(rules.indexOf('chain output'))
    .split('\n')
    .map((l) => l.trim());

describe('namespace ruleset', () => {
  it('egress all: DNS to the node end, admin allow-list, then every private/special range and the node refused, then the internet', () => {
    const rules = namespaceRuleset({ ...base, mode: 'all', allow: ['10.99.0.0/16'] });
    for (const cidr of [...DEFAULT_DENIED_IPV4, '192.0.2.2/32']) expect(rules).toContain(cidr);
    expect(rules).toContain(
      'set allow { type ipv4_addr; flags interval; auto-merge; elements = { 10.99.0.0/16 } }',
    );
    const out = output(rules);
    const at = (rule: string) => out.findIndex((l) => l.startsWith(rule));
    expect(at('oifname "eth0" ip daddr 10.254.0.1 udp dport 53 accept')).toBeGreaterThan(0);
    expect(at('oifname "eth0" ip daddr @allow accept')).toBeLessThan(
      at('ip daddr @deny meta l4proto tcp reject with tcp reset'),
    );
    expect(at('ip daddr @deny meta l4proto tcp reject with tcp reset')).toBeLessThan(
      at('oifname "eth0" meta nfproto ipv4 accept'),
    );
    expect(out).toContain('type filter hook output priority filter; policy drop;');
    // In: only the node's SSH to the namespace end.
    expect(rules).toContain('iifname "eth0" ip saddr 10.254.0.1 ip daddr 10.254.0.2 tcp dport 22 accept');
    expect(rules).toMatch(/chain input \{\n\s+type filter hook input priority filter; policy drop;/);
  });

  it('egress none: nothing out but replies (no DNS either)', () => {
    const out = output(namespaceRuleset({ ...base, mode: 'none' }));
    expect(out.filter((l) => l.endsWith('accept'))).toEqual(['ct state established,related accept']);
  });

  it('allowDomains: only addresses the DNS forwarder learned, and never a denied one (DNS rebinding)', () => {
    const out = output(namespaceRuleset({ ...base, mode: 'domains' }));
    expect(out).not.toContain('oifname "eth0" meta nfproto ipv4 accept');
    expect(out.indexOf('ip daddr @deny drop')).toBeLessThan(
      out.indexOf('oifname "eth0" ip daddr @domains accept'),
    );
  });

  it('ignores IPv6 CIDRs (the namespace has no IPv6 at all)', () => {
    expect(namespaceRuleset({ ...base, mode: 'all', allow: ['fd00::/8'] })).not.toContain('fd00::');
  });
});

describe('node ruleset', () => {
  it('masquerades the VM network, keeps VMs apart and lets them send the node nothing but DNS', () => {
    const rules = hostRuleset('10.254.0.0/16');
    expect(hostTableName('10.254.0.0/16')).toBe('waggle_10_254_0_0_16');
    expect(rules).toContain('ip saddr 10.254.0.0/16 ip daddr != 10.254.0.0/16 masquerade');
    expect(rules).toContain('ip saddr 10.254.0.0/16 ip daddr 10.254.0.0/16 drop');
    expect(rules).toContain('ip saddr 10.254.0.0/16 udp dport 53 accept');
    expect(rules.indexOf('udp dport 53 accept')).toBeLessThan(
      rules.lastIndexOf('ip saddr 10.254.0.0/16 drop'),
    );
    // Re-applying replaces the table (idempotent start-up).
    expect(rules.startsWith('table ip waggle_10_254_0_0_16\ndelete table ip waggle_10_254_0_0_16\n')).toBe(
      true,
    );
  });
});
