import 'reflect-metadata'; // @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill
import { KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import {
  CertificatesV1Api,
  type KubeConfig,
  type V1CertificateSigningRequest,
} from '@kubernetes/client-node';
import * as x509 from '@peculiar/x509';
import type { Logger } from 'pino';
import { type AgentTls, type AgentTlsSource, nodeAgentServerName } from '../client.ts';

// Node's global Web Crypto (the same object as node:crypto's `webcrypto`, typed as @peculiar/x509 expects).
x509.cryptoProvider.set(crypto);

export interface ServingCertificateOptions {
  kc: KubeConfig;
  nodeName: string;
  /** The operator's custom signer (`spec.signerName`). */
  signerName: string;
  /** Where the key and certificate are kept on the node (0700; the key never leaves it). */
  dir: string;
  /** The client CA (the operator publishes it in a ConfigMap, mounted here). */
  caFile: string;
  /** Requested lifetime (`spec.expirationSeconds`); the signer may shorten it. */
  expirationSeconds?: number;
  /** How long to wait for the operator to sign (default 10 minutes). */
  issueTimeoutMs?: number;
  /** How often expiry and the CA file are checked (default 30 s). */
  checkIntervalMs?: number;
  log: Logger;
  onChange?: (tls: AgentTls) => void;
  now?: () => number;
}

/** Why the certificate on disk cannot be served (or must be replaced), or undefined. */
export function servingCertificateProblem(
  tls: AgentTls | undefined,
  nodeName: string,
  now = Date.now(),
): string | undefined {
  if (!tls) return 'no certificate';
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(tls.cert);
    ca = new X509Certificate(tls.ca);
    createSecureContext({ cert: tls.cert, key: tls.key, ca: tls.ca }); // the key matches
  } catch (err) {
    return `unusable certificate (${(err as Error).message})`;
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return 'not signed by the current CA';
  if (!(cert.subjectAltName ?? '').split(', ').includes(`DNS:${nodeAgentServerName(nodeName)}`)) {
    return `not issued for node ${nodeName}`;
  }
  const from = cert.validFromDate.getTime();
  const to = cert.validToDate.getTime();
  if (now >= to) return 'expired';
  // Renew at two thirds of the certificate's life (as kubelet's certificate manager does, roughly).
  if (now >= from + ((to - from) * 2) / 3) return 'two thirds of its life are over';
  return undefined;
}

/**
 * This node's serving identity, kubelet-style: the key is made here and never leaves the node;
 * a CertificateSigningRequest for the operator's signer names this node, and the operator signs
 * it only when the apiserver says the requester's token is bound to this node. The pair is kept
 * in `dir` (a restart reuses it while it is good) and replaced at two thirds of its life or when
 * the CA changes; `onChange` hears of each new pair.
 */
export class ServingCertificate implements AgentTlsSource {
  readonly #o: ServingCertificateOptions;
  readonly #api: CertificatesV1Api;
  #tls: AgentTls | undefined;
  #version = 0;
  #timer: NodeJS.Timeout | undefined;
  #renewing = false;

  constructor(opts: ServingCertificateOptions) {
    this.#o = opts;
    this.#api = opts.kc.makeApiClient(CertificatesV1Api);
  }

  current(): AgentTls {
    if (!this.#tls) throw new Error('no serving certificate yet');
    return this.#tls;
  }

  version(): number {
    return this.#version;
  }

  /** Loads the kept pair or requests one (waits for the operator to sign it). */
  async ensure(): Promise<AgentTls> {
    const ca = await readFile(this.#o.caFile, 'utf8');
    const kept = await this.#readKept(ca);
    const now = (this.#o.now ?? Date.now)();
    const problem = servingCertificateProblem(kept, this.#o.nodeName, now);
    if (!problem && kept) {
      this.#set(kept);
      return kept;
    }
    this.#o.log.info({ node: this.#o.nodeName, reason: problem }, 'requesting a serving certificate');
    const issued = await this.request(ca);
    this.#set(issued);
    return issued;
  }

  async #readKept(ca: string): Promise<AgentTls | undefined> {
    try {
      const [cert, key] = await Promise.all([
        readFile(join(this.#o.dir, 'tls.crt'), 'utf8'),
        readFile(join(this.#o.dir, 'tls.key'), 'utf8'),
      ]);
      return { ca, cert, key };
    } catch {
      return undefined;
    }
  }

  #set(tls: AgentTls): void {
    const changed = this.#tls !== undefined;
    this.#tls = tls;
    this.#version++;
    if (changed) this.#o.onChange?.(tls);
  }

  /** A new key and a CSR for it; resolves with the signed pair (written to `dir`). */
  async request(ca: string): Promise<AgentTls> {
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=waggle-node-agent',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: nodeAgentServerName(this.#o.nodeName) },
        ]),
      ],
    });
    const created = await this.#api.createCertificateSigningRequest({
      body: {
        metadata: { generateName: `waggle-node-agent-${this.#o.nodeName}-` },
        spec: {
          request: Buffer.from(csr.toString('pem')).toString('base64'),
          signerName: this.#o.signerName,
          usages: ['digital signature', 'server auth'],
          ...(this.#o.expirationSeconds ? { expirationSeconds: this.#o.expirationSeconds } : {}),
        },
      },
    });
    const name = created.metadata?.name as string;
    this.#o.log.info({ node: this.#o.nodeName, csr: name }, 'certificate signing request created');
    const certPem = await this.#waitForCertificate(name);
    const keyPem = KeyObject.from(keys.privateKey).export({ format: 'pem', type: 'pkcs8' }).toString();
    const tls = { ca, cert: certPem, key: keyPem };
    const problem = servingCertificateProblem(tls, this.#o.nodeName, (this.#o.now ?? Date.now)());
    if (problem && problem !== 'two thirds of its life are over') {
      throw new Error(`CSR ${name}: the issued certificate is unusable: ${problem}`);
    }
    await mkdir(this.#o.dir, { recursive: true, mode: 0o700 });
    // Key first, then the certificate (each replaced atomically): a crash in between leaves a
    // pair that does not match, which the next start treats as no certificate.
    await writeFile(join(this.#o.dir, 'tls.key.tmp'), keyPem, { mode: 0o600 });
    await rename(join(this.#o.dir, 'tls.key.tmp'), join(this.#o.dir, 'tls.key'));
    await writeFile(join(this.#o.dir, 'tls.crt.tmp'), certPem, { mode: 0o644 });
    await rename(join(this.#o.dir, 'tls.crt.tmp'), join(this.#o.dir, 'tls.crt'));
    this.#o.log.info(
      { node: this.#o.nodeName, csr: name, notAfter: new X509Certificate(certPem).validTo },
      'serving certificate issued',
    );
    return tls;
  }

  async #waitForCertificate(name: string): Promise<string> {
    const deadline = Date.now() + (this.#o.issueTimeoutMs ?? 600_000);
    for (;;) {
      const csr: V1CertificateSigningRequest = await this.#api.readCertificateSigningRequest({ name });
      const refused = csr.status?.conditions?.find(
        (c) => (c.type === 'Denied' || c.type === 'Failed') && c.status === 'True',
      );
      if (refused) {
        throw new Error(
          `CSR ${name} ${refused.type.toLowerCase()}: ${refused.reason}: ${refused.message ?? ''}`,
        );
      }
      if (csr.status?.certificate) return Buffer.from(csr.status.certificate, 'base64').toString('utf8');
      if (Date.now() > deadline) {
        throw new Error(
          `CSR ${name} was not signed in time: is the operator running (signer ${this.#o.signerName})?`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Checks expiry and the CA file every interval; renews when needed (never two at once). */
  start(): void {
    const tick = async () => {
      if (this.#renewing || !this.#tls) return;
      this.#renewing = true;
      try {
        const ca = await readFile(this.#o.caFile, 'utf8').catch(() => this.#tls?.ca ?? '');
        const candidate = { ...(this.#tls as AgentTls), ca };
        const problem = servingCertificateProblem(candidate, this.#o.nodeName, (this.#o.now ?? Date.now)());
        if (!problem) {
          if (ca !== this.#tls.ca) this.#set(candidate); // the same CA re-published
          return;
        }
        this.#o.log.info({ node: this.#o.nodeName, reason: problem }, 'renewing the serving certificate');
        this.#set(await this.request(ca));
      } catch (err) {
        this.#o.log.warn(
          { node: this.#o.nodeName, err: (err as Error).message },
          'serving certificate renewal failed; retrying',
        );
      } finally {
        this.#renewing = false;
      }
    };
    this.#timer = setInterval(() => void tick(), this.#o.checkIntervalMs ?? 30_000);
    this.#timer.unref();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
