import 'reflect-metadata';
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { createServer, connect as tlsConnect } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { issueLeaf, renewalReason } from './leaf-certificates.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** A self-signed CA like Helm's genCA (RSA, key in PKCS#1 PEM) or an ECDSA one. */
async function makeCA(kind: 'rsa' | 'ec'): Promise<{ certPem: string; keyPem: string }> {
  const alg =
    kind === 'rsa'
      ? {
          name: 'RSASSA-PKCS1-v1_5',
          hash: 'SHA-256',
          publicExponent: new Uint8Array([1, 0, 1]),
          modulusLength: 2048,
        }
      : { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=test-${kind}-ca`,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 3650 * DAY),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      // A key id computed another way than @peculiar's default, as Go's (Helm's genCA) is.
      new x509.SubjectKeyIdentifierExtension(randomBytes(20).toString('hex')),
    ],
  });
  const pkcs8 = KeyObject.from(keys.privateKey).export({ format: 'pem', type: 'pkcs8' }).toString();
  const keyPem =
    kind === 'rsa'
      ? createPrivateKey(pkcs8).export({ format: 'pem', type: 'pkcs1' }).toString() // "RSA PRIVATE KEY", as Helm writes it
      : pkcs8;
  return { certPem: cert.toString('pem'), keyPem };
}

let rsa: { certPem: string; keyPem: string };
let ec: { certPem: string; keyPem: string };
beforeAll(async () => {
  [rsa, ec] = await Promise.all([makeCA('rsa'), makeCA('ec')]);
});

describe('issueLeaf', () => {
  it('signs with a Helm-style RSA CA: the name, DNS names, both TLS usages and the validity asked for', async () => {
    expect(rsa.keyPem).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    const now = new Date();
    const leaf = await issueLeaf(rsa, { cn: 'waggle-node-agent', dnsNames: ['waggle-node-agent'] }, DAY, now);
    const cert = new X509Certificate(leaf.certPem);
    const ca = new X509Certificate(rsa.certPem);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.subject.trim()).toBe('CN=waggle-node-agent');
    expect(cert.subjectAltName).toBe('DNS:waggle-node-agent');
    expect(cert.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
    expect(Math.abs(cert.validToDate.getTime() - (now.getTime() + DAY))).toBeLessThan(2_000);
    expect(cert.checkPrivateKey(createPrivateKey(leaf.keyPem))).toBe(true);
    expect(
      renewalReason(
        leaf.certPem,
        rsa.certPem,
        { cn: 'waggle-node-agent', dnsNames: ['waggle-node-agent'] },
        DAY,
      ),
    ).toBeUndefined();
  });

  it('chains to the CA in a real TLS handshake (OpenSSL finds the issuer by its key id)', async () => {
    const server = await issueLeaf(rsa, { cn: 'waggle-node-agent', dnsNames: ['waggle-node-agent'] }, DAY);
    const client = await issueLeaf(rsa, { cn: 'waggle-operator' }, DAY);
    const srv = createServer(
      {
        cert: server.certPem,
        key: server.keyPem,
        ca: rsa.certPem,
        requestCert: true,
        rejectUnauthorized: true,
      },
      (s) => s.end((s.getPeerCertificate().subject?.CN as string) ?? ''),
    );
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    try {
      const peer = await new Promise<string>((resolve, reject) => {
        const s = tlsConnect({
          host: '127.0.0.1',
          port,
          servername: 'waggle-node-agent',
          ca: rsa.certPem,
          cert: client.certPem,
          key: client.keyPem,
        });
        let data = '';
        s.on('data', (d) => {
          data += d;
        });
        s.on('end', () => resolve(data));
        s.on('error', reject);
      });
      expect(peer).toBe('waggle-operator');
    } finally {
      srv.close();
    }
  });

  it('signs with an ECDSA CA too', async () => {
    const leaf = await issueLeaf(ec, { cn: 'waggle-gateway' }, HOUR);
    expect(new X509Certificate(leaf.certPem).verify(new X509Certificate(ec.certPem).publicKey)).toBe(true);
  });
});

describe('renewalReason', () => {
  const spec = { cn: 'waggle-operator' };

  it('keeps a fresh certificate and renews one in the last third of its life', async () => {
    const issued = new Date('2026-11-24T00:00:00Z');
    const leaf = await issueLeaf(rsa, spec, DAY, issued);
    const at = (h: number) => new Date(issued.getTime() + h * HOUR);
    expect(renewalReason(leaf.certPem, rsa.certPem, spec, DAY, at(1))).toBeUndefined();
    expect(renewalReason(leaf.certPem, rsa.certPem, spec, DAY, at(15))).toBeUndefined();
    expect(renewalReason(leaf.certPem, rsa.certPem, spec, DAY, at(17))).toBe('expires soon');
    expect(renewalReason(leaf.certPem, rsa.certPem, spec, DAY, at(30))).toBe('expires soon');
  });

  it('replaces the chart’s long-lived certificates with short-lived ones', async () => {
    const chartStyle = await issueLeaf(rsa, spec, 3650 * DAY);
    expect(renewalReason(chartStyle.certPem, rsa.certPem, spec, DAY)).toBe(
      'valid for longer than the rotation policy',
    );
  });

  it('renews what is missing, unreadable, from another CA, for another name or without its DNS name', async () => {
    const leaf = await issueLeaf(rsa, spec, DAY);
    expect(renewalReason(undefined, rsa.certPem, spec, DAY)).toBe('no certificate');
    expect(renewalReason('garbage', rsa.certPem, spec, DAY)).toBe('unreadable certificate');
    expect(renewalReason(leaf.certPem, ec.certPem, spec, DAY)).toBe('not signed by the current CA');
    expect(renewalReason(leaf.certPem, rsa.certPem, { cn: 'waggle-gateway' }, DAY)).toBe(
      'issued to CN=waggle-operator',
    );
    expect(
      renewalReason(
        leaf.certPem,
        rsa.certPem,
        { cn: 'waggle-operator', dnsNames: ['waggle-node-agent'] },
        DAY,
      ),
    ).toBe('missing DNS name waggle-node-agent');
  });
});
