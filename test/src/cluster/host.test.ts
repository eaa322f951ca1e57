import { describe, expect, it } from 'vitest';
import { splitRule } from './host.ts';

describe('splitRule', () => {
  it('keeps quoted iptables comments together', () => {
    expect(
      splitRule('-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ).toEqual([
      '-D',
      'PREROUTING',
      '-m',
      'comment',
      '--comment',
      'kubernetes service portals',
      '-j',
      'KUBE-SERVICES',
    ]);
    expect(splitRule('-A X --comment "a \\"b\\" c" -j Y')).toEqual([
      '-A',
      'X',
      '--comment',
      'a "b" c',
      '-j',
      'Y',
    ]);
  });
});
