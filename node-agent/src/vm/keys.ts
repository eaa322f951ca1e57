import ssh2 from 'ssh2';

// ssh2 is CommonJS: Node's ESM loader exposes only its default export reliably.
const { utils } = ssh2;

export interface SshKeyPair {
  /** OpenSSH private key (PEM). */
  privateKey: string;
  /** `ecdsa-sha2-nistp256 AAAA…` line. */
  publicKey: string;
}

/** A fresh ECDSA P-256 key pair in OpenSSH formats. */
export function generateEcdsaKeyPair(comment: string): SshKeyPair {
  const kp = utils.generateKeyPairSync('ecdsa', { bits: 256, comment });
  return { privateKey: kp.private, publicKey: kp.public };
}

/** The SSH wire-format public key blob of an OpenSSH public or private key, for host key pinning. */
export function publicKeyBlob(key: string): Buffer {
  const parsed = utils.parseKey(key);
  if (parsed instanceof Error) throw parsed;
  const k = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!k) throw new Error('no key found');
  return k.getPublicSSH();
}
