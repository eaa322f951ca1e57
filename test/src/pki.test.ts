import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCA, serviceAccountKeyPair } from './pki.ts';

describe('createCA', () => {
  it('issues server certificates that chain to the CA with the requested SANs', async () => {
    const ca = await createCA('test-ca');
    const leaf = await ca.issue({
      cn: 'kube-apiserver',
      usage: 'server',
      dnsNames: ['localhost', 'kubernetes.default.svc'],
      ips: ['127.0.0.1', '10.96.0.1'],
    });
    const caCert = new X509Certificate(ca.certPem);
    const cert = new X509Certificate(leaf.certPem);
    expect(caCert.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.subjectAltName).toContain('DNS:kubernetes.default.svc');
    expect(cert.subjectAltName).toContain('IP Address:10.96.0.1');
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.keyUsage).toContain('1.3.6.1.5.5.7.3.1'); // serverAuth
    expect(cert.keyUsage).not.toContain('1.3.6.1.5.5.7.3.2');
  });

  it('puts Kubernetes user and groups in CN and O of client certificates', async () => {
    const ca = await createCA();
    const leaf = await ca.issue({ cn: 'waggle-admin', orgs: ['system:masters', 'team, a'], usage: 'client' });
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.subject).toContain('CN=waggle-admin');
    expect(cert.subject).toContain('O=system:masters');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']); // clientAuth only
    expect(leaf.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it('gives every certificate a distinct serial number', async () => {
    const ca = await createCA();
    const a = new X509Certificate((await ca.issue({ cn: 'a', usage: 'both' })).certPem);
    const b = new X509Certificate((await ca.issue({ cn: 'a', usage: 'both' })).certPem);
    expect(a.serialNumber).not.toBe(b.serialNumber);
  });
});

describe('serviceAccountKeyPair', () => {
  it('returns a PEM key pair', () => {
    const kp = serviceAccountKeyPair();
    expect(kp.publicPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(kp.privatePem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });
});
