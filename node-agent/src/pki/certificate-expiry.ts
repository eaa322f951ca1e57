import { X509Certificate } from 'node:crypto';

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The subject's common name (what Waggle's mTLS identities are told apart by), else the subject. */
function identityOf(cert: X509Certificate): string {
  const subject = cert.subject.trim();
  return /^CN=(.+)$/m.exec(subject)?.[1] ?? subject;
}

/**
 * When each certificate in the given PEM texts (a leaf, a CA bundle) stops being valid, by
 * identity (its CN), in seconds since the epoch: the value of
 * `waggle_certificate_expiry_timestamp_seconds`. Of two certificates with one CN (a CA bundle
 * mid-rotation) the earlier expiry is kept; unparsable blocks are skipped.
 */
export function certificateExpiries(pems: Iterable<string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const pem of pems) {
    for (const block of pem.match(PEM_BLOCK) ?? []) {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(block);
      } catch {
        continue;
      }
      const identity = identityOf(cert);
      const expiry = Math.floor(cert.validToDate.getTime() / 1000);
      out.set(identity, Math.min(expiry, out.get(identity) ?? expiry));
    }
  }
  return out;
}
