import { describe, expect, it } from 'vitest';
import { parseVMNetworkCidr, SubnetAllocator, subnetOf } from './subnets.ts';

describe('VM subnets', () => {
  it('gives each VM its own /30: the node end, the namespace end, and a name-safe id', () => {
    expect(subnetOf('10.254.0.0/16', 0)).toEqual({
      slot: 0,
      hostIP: '10.254.0.1',
      nsIP: '10.254.0.2',
      id: '0afe0000',
    });
    expect(subnetOf('10.254.0.0/16', 65)).toEqual({
      slot: 65,
      hostIP: '10.254.1.5',
      nsIP: '10.254.1.6',
      id: '0afe0104',
    });
  });

  it('hands out distinct slots, reuses released ones, honours reservations and says when it is full', () => {
    const a = new SubnetAllocator('10.254.0.0/28'); // four /30s
    a.reserve(1);
    const got = [a.allocate(), a.allocate(), a.allocate()].map((s) => s.slot);
    expect(got).toEqual([0, 2, 3]);
    expect(() => a.allocate()).toThrow(/no free \/30 left in 10.254.0.0\/28/);
    a.release(2);
    expect(a.allocate().slot).toBe(2);
  });

  it('rejects CIDRs it cannot use, saying what to use', () => {
    expect(() => parseVMNetworkCidr('10.254.0.1/16')).toThrow(/host bits set; use 10.254.0.0\/16/);
    expect(() => parseVMNetworkCidr('fd00::/64')).toThrow(/IPv4 CIDR between \/8 and \/29/);
    expect(() => parseVMNetworkCidr('10.254.0.0/30')).toThrow(/between \/8 and \/29/);
    expect(() => parseVMNetworkCidr('lots')).toThrow(/not a CIDR/);
  });
});
