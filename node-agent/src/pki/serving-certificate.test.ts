import { createCA } from '@waggle/test';
import { describe, expect, it } from 'vitest';
import { nodeAgentServerName } from '../client.ts';
import { servingCertificateProblem } from './serving-certificate.ts';

describe('servingCertificateProblem', () => {
  it('keeps a good certificate for this node and replaces one at two thirds of its life', async () => {
    const ca = await createCA('agents-ca');
    const pair = await ca.issue({
      cn: 'waggle-node-agent',
      usage: 'server',
      dnsNames: [nodeAgentServerName('node-a')],
      validDays: 3,
    });
    const tls = { ca: ca.certPem, cert: pair.certPem, key: pair.keyPem };
    const now = Date.now();
    expect(servingCertificateProblem(tls, 'node-a', now)).toBeUndefined();
    expect(servingCertificateProblem(tls, 'node-a', now + 2.1 * 86_400_000)).toBe(
      'two thirds of its life are over',
    );
    expect(servingCertificateProblem(tls, 'node-a', now + 4 * 86_400_000)).toBe('expired');
  });

  it('refuses a pair for another node, from another CA, with a key that does not match, or none', async () => {
    const ca = await createCA('agents-ca');
    const other = await createCA('other-ca');
    const a = await ca.issue({
      cn: 'waggle-node-agent',
      usage: 'server',
      dnsNames: [nodeAgentServerName('node-a')],
    });
    const b = await ca.issue({
      cn: 'waggle-node-agent',
      usage: 'server',
      dnsNames: [nodeAgentServerName('node-b')],
    });
    expect(servingCertificateProblem({ ca: ca.certPem, cert: b.certPem, key: b.keyPem }, 'node-a')).toBe(
      'not issued for node node-a',
    );
    expect(servingCertificateProblem({ ca: other.certPem, cert: a.certPem, key: a.keyPem }, 'node-a')).toBe(
      'not signed by the current CA',
    );
    expect(servingCertificateProblem({ ca: ca.certPem, cert: a.certPem, key: b.keyPem }, 'node-a')).toMatch(
      /^unusable certificate/,
    );
    expect(servingCertificateProblem(undefined, 'node-a')).toBe('no certificate');
  });
});
