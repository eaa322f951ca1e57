import 'reflect-metadata'; // @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Node's global Web Crypto (the same object as node:crypto's `webcrypto`, typed as @peculiar/x509 expects).
x509.cryptoProvider.set(crypto);

/** What a node-agent mTLS leaf certificate is for: its CN and, for the agents' serving certificate, DNS names. */
export interface LeafSpec {
  cn: string;
  dnsNames?: string[];
  /** Extended key usage: `client` (operator, gateway), `server` (node-agents) or both (default). */
  usage?: 'client' | 'server' | 'both';
}

const CURVES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

/** The CA's key as a WebCrypto signing key: RSA (what Helm's genCA makes) or EC. */
async function signingKey(
  caKeyPem: string,
): Promise<{ key: CryptoKey; algorithm: { name: string; hash: string } }> {
  const k = createPrivateKey(caKeyPem);
  if (k.asymmetricKeyType === 'rsa') {
    const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { key: k.toCryptoKey(algorithm, false, ['sign']) as CryptoKey, algorithm };
  }
  if (k.asymmetricKeyType === 'ec') {
    const namedCurve = CURVES[k.asymmetricKeyDetails?.namedCurve ?? ''];
    if (!namedCurve) throw new Error(`unsupported CA curve ${k.asymmetricKeyDetails?.namedCurve}`);
    return {
      key: k.toCryptoKey({ name: 'ECDSA', namedCurve }, false, ['sign']) as CryptoKey,
      algorithm: { name: 'ECDSA', hash: 'SHA-256' },
    };
  }
  throw new Error(`unsupported CA key type ${k.asymmetricKeyType}`);
}

/**
 * Issues an ECDSA P-256 certificate for `spec`, signed by the CA, valid from a minute ago for
 * `validityMs`; the key is made here (client identities whose Secrets the operator writes).
 */
export async function issueLeaf(
  ca: { certPem: string; keyPem: string },
  spec: LeafSpec,
  validityMs: number,
  now = new Date(),
): Promise<{ certPem: string; keyPem: string }> {
  const leaf = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const certPem = await signLeaf(ca, leaf.publicKey, spec, validityMs, now);
  const keyPem = KeyObject.from(leaf.privateKey).export({ format: 'pem', type: 'pkcs8' }).toString();
  return { certPem, keyPem };
}

/**
 * Signs a certificate for someone else's public key (a node-agent's CSR): the subject, names and
 * usages come from `spec` — what the signer decided — never from the request.
 */
export async function signLeaf(
  ca: { certPem: string; keyPem: string },
  publicKey: CryptoKey,
  spec: LeafSpec,
  validityMs: number,
  now = new Date(),
): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const signer = await signingKey(ca.keyPem);
  const notBefore = new Date(now.getTime() - 60_000);
  const usage = spec.usage ?? 'both';
  const extended = [
    ...(usage !== 'client' ? [x509.ExtendedKeyUsage.serverAuth] : []),
    ...(usage !== 'server' ? [x509.ExtendedKeyUsage.clientAuth] : []),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(extended),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
  ];
  // The authority key id must be the CA's own subject key id (OpenSSL finds the issuer by it);
  // Go (Helm's genCA) derives that differently from @peculiar's default, so copy it.
  const caKeyId = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  if (caKeyId) extensions.push(new x509.AuthorityKeyIdentifierExtension(caKeyId));
  if (spec.dnsNames?.length) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(spec.dnsNames.map((value) => ({ type: 'dns', value }))),
    );
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `01${randomBytes(15).toString('hex')}`,
    subject: `CN=${spec.cn.replace(/([,+"\\<>;=])/g, '\\$1')}`,
    issuer: caCert.subject,
    notBefore,
    notAfter: new Date(now.getTime() + validityMs),
    signingAlgorithm: signer.algorithm,
    publicKey,
    signingKey: signer.key,
    extensions,
  });
  return cert.toString('pem');
}

/**
 * A new self-signed ECDSA P-256 CA for node-agent mTLS (made by the operator's leader at first
 * start; its key is kept in a Secret no pod mounts and no Helm release contains).
 */
export async function createAgentCA(
  cn: string,
  validityMs: number,
  now = new Date(),
): Promise<{ certPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: `01${randomBytes(15).toString('hex')}`,
    name: `CN=${cn}`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + validityMs),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = KeyObject.from(keys.privateKey).export({ format: 'pem', type: 'pkcs8' }).toString();
  return { certPem: cert.toString('pem'), keyPem };
}

/**
 * Why a leaf certificate must be reissued, or undefined when it is fine: missing or unreadable,
 * not signed by the CA, another name, longer-lived than the policy (the chart's initial ones),
 * or in the last third of its life.
 */
export function renewalReason(
  certPem: string | undefined,
  caCertPem: string,
  spec: LeafSpec,
  validityMs: number,
  now = new Date(),
): string | undefined {
  if (!certPem) return 'no certificate';
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return 'unreadable certificate';
  }
  const ca = new X509Certificate(caCertPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return 'not signed by the current CA';
  if (cert.subject.trim() !== `CN=${spec.cn}`) return `issued to ${cert.subject.trim()}`;
  const sans = (cert.subjectAltName ?? '').split(', ');
  const missing = (spec.dnsNames ?? []).filter((n) => !sans.includes(`DNS:${n}`));
  if (missing.length) return `missing DNS name ${missing.join(', ')}`;
  const usage = spec.usage ?? 'both';
  const eku = cert.keyUsage ?? [];
  const wanted = [
    ...(usage !== 'client' ? ['1.3.6.1.5.5.7.3.1'] : []), // serverAuth
    ...(usage !== 'server' ? ['1.3.6.1.5.5.7.3.2'] : []), // clientAuth
  ];
  if (eku.length !== wanted.length || wanted.some((o) => !eku.includes(o)))
    return `not a ${usage} certificate`;
  const from = cert.validFromDate.getTime();
  const to = cert.validToDate.getTime();
  // X.509 times have one-second resolution; allow for it (and the minute of backdating).
  if (to - from > validityMs + 120_000) return 'valid for longer than the rotation policy';
  if (to - now.getTime() < validityMs / 3) return 'expires soon';
  return undefined;
}
