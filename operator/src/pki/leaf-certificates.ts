import 'reflect-metadata'; // @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** What a node-agent mTLS leaf certificate is for: its CN and, for the agents' serving certificate, DNS names. */
export interface LeafSpec {
  cn: string;
  dnsNames?: string[];
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
 * `validityMs`, usable for TLS server and client authentication (as the chart's are).
 */
export async function issueLeaf(
  ca: { certPem: string; keyPem: string },
  spec: LeafSpec,
  validityMs: number,
  now = new Date(),
): Promise<{ certPem: string; keyPem: string }> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const signer = await signingKey(ca.keyPem);
  const leaf = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const notBefore = new Date(now.getTime() - 60_000);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    await x509.SubjectKeyIdentifierExtension.create(leaf.publicKey),
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
    publicKey: leaf.publicKey,
    signingKey: signer.key,
    extensions,
  });
  const keyPem = KeyObject.from(leaf.privateKey).export({ format: 'pem', type: 'pkcs8' }).toString();
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
  const from = cert.validFromDate.getTime();
  const to = cert.validToDate.getTime();
  // X.509 times have one-second resolution; allow for it (and the minute of backdating).
  if (to - from > validityMs + 120_000) return 'valid for longer than the rotation policy';
  if (to - now.getTime() < validityMs / 3) return 'expires soon';
  return undefined;
}
