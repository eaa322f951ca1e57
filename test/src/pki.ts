import 'reflect-metadata'; // @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill
import { generateKeyPairSync, KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

// Node's global Web Crypto (the same object as node:crypto's `webcrypto`, typed as @peculiar/x509 expects).
x509.cryptoProvider.set(crypto);

const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface IssuedCert {
  certPem: string;
  keyPem: string;
}

export interface CertRequest {
  /** Subject common name (the Kubernetes user name for client certificates). */
  cn: string;
  /** Subject organizations (Kubernetes groups for client certificates). */
  orgs?: string[];
  dnsNames?: string[];
  ips?: string[];
  usage: 'server' | 'client' | 'both';
  validDays?: number;
}

/** The names a kube-apiserver serving certificate must carry (in-cluster DNS names + `ips`). */
export function apiserverServingRequest(ips: string[], validDays?: number): CertRequest {
  return {
    cn: 'kube-apiserver',
    usage: 'server',
    dnsNames: [
      'localhost',
      'kubernetes',
      'kubernetes.default',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
    ],
    ips,
    ...(validDays === undefined ? {} : { validDays }),
  };
}

/** A certificate authority that issues ECDSA P-256 certificates (in memory; write what you need). */
export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
  issue(req: CertRequest): Promise<IssuedCert>;
}

async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

function privateKeyPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ format: 'pem', type: 'pkcs8' }).toString();
}

const serial = () => `01${randomBytes(15).toString('hex')}`;

/** Escapes a value for an RFC 4514 distinguished name string. */
function dnValue(v: string): string {
  return v.replace(/([,+"\\<>;=])/g, '\\$1');
}

export async function createCA(cn = 'waggle-test-ca', validDays = 365): Promise<CertificateAuthority> {
  const keys = await keyPair();
  const notBefore = new Date(Date.now() - 60_000);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${dnValue(cn)}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + validDays * DAY_MS),
    signingAlgorithm: EC_ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });

  async function issue(req: CertRequest): Promise<IssuedCert> {
    const leaf = await keyPair();
    const subject = [`CN=${dnValue(req.cn)}`, ...(req.orgs ?? []).map((o) => `O=${dnValue(o)}`)].join(', ');
    const eku =
      req.usage === 'server'
        ? [x509.ExtendedKeyUsage.serverAuth]
        : req.usage === 'client'
          ? [x509.ExtendedKeyUsage.clientAuth]
          : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth];
    const names: x509.JsonGeneralName[] = [
      ...(req.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
      ...(req.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(eku),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      await x509.SubjectKeyIdentifierExtension.create(leaf.publicKey),
    ];
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
    const nb = new Date(Date.now() - 60_000);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject,
      issuer: caCert.subject,
      notBefore: nb,
      notAfter: new Date(nb.getTime() + (req.validDays ?? 365) * DAY_MS),
      signingAlgorithm: EC_ALG,
      publicKey: leaf.publicKey,
      signingKey: keys.privateKey,
      extensions,
    });
    return { certPem: cert.toString('pem'), keyPem: privateKeyPem(leaf.privateKey) };
  }

  return { certPem: caCert.toString('pem'), keyPem: privateKeyPem(keys.privateKey), issue };
}

/** An ECDSA P-256 key pair for signing ServiceAccount tokens (ES256). */
export function serviceAccountKeyPair(): { publicPem: string; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

/** Writes a certificate and its key as `<name>.crt` / `<name>.key` (key mode 0600). */
export async function writeCertPair(
  dir: string,
  name: string,
  pair: IssuedCert,
): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await writeFile(cert, pair.certPem, { mode: 0o644 });
  await writeFile(key, pair.keyPem, { mode: 0o600 });
  return { cert, key };
}
