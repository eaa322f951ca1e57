import { createCA } from '@waggle/test';
import { describe, expect, it } from 'vitest';
import { certificateExpiries } from './certificate-expiry.ts';

describe('certificateExpiries', () => {
  it('gives each certificate of a leaf and a CA bundle its expiry by CN, the earlier of two with one CN', async () => {
    const ca = await createCA('waggle-agent-ca', 365);
    const older = await createCA('waggle-agent-ca', 30);
    const leaf = await ca.issue({ cn: 'waggle-node-agent', usage: 'server', validDays: 2 });
    const got = certificateExpiries([leaf.certPem, `${ca.certPem}\n${older.certPem}`, 'not a certificate']);
    expect([...got.keys()].sort()).toEqual(['waggle-agent-ca', 'waggle-node-agent']);
    const days = (identity: string) => ((got.get(identity) as number) - Date.now() / 1000) / 86_400;
    expect(days('waggle-node-agent')).toBeGreaterThan(1.9);
    expect(days('waggle-node-agent')).toBeLessThan(2.1);
    expect(days('waggle-agent-ca')).toBeLessThan(31);
  });
});
