import { X509Certificate } from 'node:crypto';
import { createCA, deleteTestNamespace, kubeClients } from '@waggle/test';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AgentCertificateRotator } from '../src/pki/agent-certificate-rotator.ts';

const { kc, core } = kubeClients(inject('kubeconfigPath'));
const namespace = `agent-certs-${process.pid}`;
const DAY = 86_400_000;
const b64 = (s: string) => Buffer.from(s).toString('base64');
const leaves = [
  { secret: 'node-agent-tls', spec: { cn: 'waggle-node-agent', dnsNames: ['waggle-node-agent'] } },
  { secret: 'operator-client-tls', spec: { cn: 'waggle-operator' } },
  { secret: 'gateway-client-tls', spec: { cn: 'waggle-gateway' } },
];
let ca: Awaited<ReturnType<typeof createCA>>;

const certOf = async (name: string) => {
  const s = await core.readNamespacedSecret({ name, namespace });
  return new X509Certificate(Buffer.from(s.data?.['tls.crt'] ?? '', 'base64'));
};

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  ca = await createCA('agents-ca', 3650);
  await core.createNamespacedSecret({
    namespace,
    body: { metadata: { name: 'agent-ca' }, data: { 'ca.crt': b64(ca.certPem), 'ca.key': b64(ca.keyPem) } },
  });
  // As the chart installs them: 10-year certificates (the gateway's Secret is missing).
  for (const leaf of leaves.slice(0, 2)) {
    const pair = await ca.issue({
      cn: leaf.spec.cn,
      usage: 'both',
      dnsNames: leaf.spec.dnsNames,
      validDays: 3650,
    });
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: leaf.secret },
        data: { 'ca.crt': b64(ca.certPem), 'tls.crt': b64(pair.certPem), 'tls.key': b64(pair.keyPem) },
      },
    });
  }
});

afterAll(async () => {
  await deleteTestNamespace(kc, namespace);
});

describe('AgentCertificateRotator (real apiserver)', () => {
  it('replaces long-lived certificates with short-lived ones, creates a missing one, then leaves them alone', async () => {
    let now = new Date();
    const renewedMetric: string[] = [];
    const rotator = new AgentCertificateRotator({
      kc,
      namespace,
      caSecret: 'agent-ca',
      leaves,
      validityMs: DAY,
      log: pino({ level: 'silent' }),
      onRenewed: (secret) => renewedMetric.push(secret),
      now: () => now,
    });
    expect(await rotator.check()).toEqual([
      { secret: 'node-agent-tls', reason: 'valid for longer than the rotation policy' },
      { secret: 'operator-client-tls', reason: 'valid for longer than the rotation policy' },
      { secret: 'gateway-client-tls', reason: 'no certificate' },
    ]);
    expect(renewedMetric).toEqual(leaves.map((l) => l.secret));
    const caCert = new X509Certificate(ca.certPem);
    for (const leaf of leaves) {
      const cert = await certOf(leaf.secret);
      expect(cert.verify(caCert.publicKey)).toBe(true);
      expect(cert.subject.trim()).toBe(`CN=${leaf.spec.cn}`);
      expect(cert.validToDate.getTime() - now.getTime()).toBeLessThanOrEqual(DAY);
    }
    expect((await certOf('node-agent-tls')).subjectAltName).toBe('DNS:waggle-node-agent');
    const serial = (await certOf('gateway-client-tls')).serialNumber;

    expect(await rotator.check()).toEqual([]);
    expect((await certOf('gateway-client-tls')).serialNumber).toBe(serial);

    // Two thirds into their life, all three are reissued.
    now = new Date(now.getTime() + 17 * 3_600_000);
    expect((await rotator.check()).map((r) => r.reason)).toEqual([
      'expires soon',
      'expires soon',
      'expires soon',
    ]);
    expect((await certOf('gateway-client-tls')).serialNumber).not.toBe(serial);
  });

  it('says which Secret lacks the CA key', async () => {
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'broken-ca' }, data: { 'ca.crt': b64(ca.certPem) } },
    });
    const rotator = new AgentCertificateRotator({
      kc,
      namespace,
      caSecret: 'broken-ca',
      leaves,
      validityMs: DAY,
      log: pino({ level: 'silent' }),
    });
    await expect(rotator.check()).rejects.toThrow(`Secret ${namespace}/broken-ca lacks ca.crt or ca.key`);
  });
});
