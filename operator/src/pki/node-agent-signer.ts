import 'reflect-metadata'; // @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill
import {
  CertificatesV1Api,
  type KubeConfig,
  type V1CertificateSigningRequest,
} from '@kubernetes/client-node';
import * as x509 from '@peculiar/x509';
import { nodeAgentServerName } from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import { startPeriodic } from '../runtime/periodic.ts';
import { signLeaf } from './leaf-certificates.ts';

// Node's global Web Crypto (the same object as node:crypto's `webcrypto`, typed as @peculiar/x509 expects).
x509.cryptoProvider.set(crypto);

/** The user-info extra the apiserver records for ServiceAccount tokens bound to a pod's (or a) Node. */
export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
/** The subject every node-agent serving certificate carries (the node is in its DNS name). */
export const NODE_AGENT_CN = 'waggle-node-agent';
const SERVER_NAME_SUFFIX = nodeAgentServerName('');
// A node name: a DNS subdomain (so no wildcard, no empty label).
const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const ALLOWED_USAGES = new Set(['digital signature', 'key encipherment', 'server auth']);

export type Judgement =
  | { ok: true; nodeName: string; publicKey: CryptoKey; validityMs: number }
  | { ok: false; reason: string; message: string };

/**
 * Decides a node-agent CSR from what the apiserver recorded about its requester — never from
 * what the request claims alone: the requester must be the node-agent ServiceAccount, its token
 * bound to a node (pod-bound tokens carry the pod's node), and the one name requested must be
 * that node's (`nodeAgentServerName`). Usages: serving only.
 */
export async function judgeNodeAgentCSR(
  csr: V1CertificateSigningRequest,
  policy: { requester: string; validityMs: number },
): Promise<Judgement> {
  const deny = (reason: string, message: string): Judgement => ({ ok: false, reason, message });
  const spec = csr.spec;
  if (spec.username !== policy.requester) {
    return deny(
      'UnexpectedRequester',
      `only ${policy.requester} may request node-agent certificates, not ${spec.username}`,
    );
  }
  const nodes = spec.extra?.[NODE_NAME_EXTRA] ?? [];
  if (nodes.length !== 1 || !nodes[0]) {
    return deny(
      'NoNodeBinding',
      `the requester's token is not bound to a node (no ${NODE_NAME_EXTRA}); use the pod's projected ServiceAccount token`,
    );
  }
  const boundNode = nodes[0];
  let req: x509.Pkcs10CertificateRequest;
  try {
    req = new x509.Pkcs10CertificateRequest(Buffer.from(spec.request, 'base64').toString('utf8'));
    if (!(await req.verify())) return deny('InvalidRequest', 'the request is not signed by its own key');
  } catch (err) {
    return deny('InvalidRequest', `unreadable certificate request: ${(err as Error).message}`);
  }
  const alg = req.publicKey.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  const keyOk =
    (alg.name === 'ECDSA' && ['P-256', 'P-384'].includes(alg.namedCurve ?? '')) ||
    (alg.name === 'RSASSA-PKCS1-v1_5' && (alg.modulusLength ?? 0) >= 2048);
  if (!keyOk) return deny('InvalidRequest', 'the key must be ECDSA P-256/P-384 or RSA of at least 2048 bits');
  if (req.subject !== `CN=${NODE_AGENT_CN}`) {
    return deny('InvalidRequest', `the subject must be CN=${NODE_AGENT_CN}, not ${req.subject}`);
  }
  const sanRaw = req.getExtension('2.5.29.17'); // subjectAltName
  const names = sanRaw ? new x509.SubjectAlternativeNameExtension(sanRaw.rawData).names.items : [];
  const dns = names.filter((n) => n.type === 'dns').map((n) => n.value);
  if (names.length !== 1 || dns.length !== 1 || !dns[0]?.endsWith(SERVER_NAME_SUFFIX)) {
    return deny('InvalidRequest', `request exactly one name, DNS:${nodeAgentServerName('<node>')}`);
  }
  const claimed = dns[0].slice(0, -SERVER_NAME_SUFFIX.length);
  if (!NODE_NAME.test(claimed)) return deny('InvalidRequest', `not a node name: ${claimed}`);
  if (claimed !== boundNode) {
    return deny(
      'NodeMismatch',
      `requested a certificate for node ${claimed}, but the requester's token is bound to node ${boundNode}`,
    );
  }
  const usages = spec.usages ?? [];
  if (!usages.includes('server auth') || usages.some((u) => !ALLOWED_USAGES.has(u))) {
    return deny(
      'InvalidUsages',
      `usages must be server auth (with digital signature, key encipherment): ${usages.join(', ')}`,
    );
  }
  const requestedMs = spec.expirationSeconds ? spec.expirationSeconds * 1000 : Number.POSITIVE_INFINITY;
  return {
    ok: true,
    nodeName: claimed,
    publicKey: await req.publicKey.export(),
    validityMs: Math.min(requestedMs, policy.validityMs),
  };
}

export interface NodeAgentSignerOptions {
  kc: KubeConfig;
  /** The custom signer name node-agents request (e.g. `waggle.dev/waggle-system.waggle-node-agent`). */
  signerName: string;
  /** The only user that may request: `system:serviceaccount:<namespace>:<node-agent SA>`. */
  requester: string;
  validityMs: number;
  /** The CA that signs (the leader's, made at first start). */
  ca: () => Promise<{ certPem: string; keyPem: string }>;
  log: Logger;
  onDecision?: (outcome: 'issued' | 'denied', reason: string) => void;
  now?: () => Date;
}

const conditionOf = (csr: V1CertificateSigningRequest, type: string) =>
  csr.status?.conditions?.find((c) => c.type === type && c.status === 'True');

/**
 * The operator's side of kubelet-style serving certificates for node-agents: the leader looks at
 * every CSR for its signer that is not decided yet, denies what `judgeNodeAgentCSR` refuses (with
 * the reason on the CSR), and approves and signs the rest. An approved CSR without a certificate
 * (a leader that stopped in between) is signed on the next pass.
 */
export class NodeAgentSigner {
  readonly #o: NodeAgentSignerOptions;
  readonly #api: CertificatesV1Api;
  #stop: (() => void) | undefined;

  constructor(opts: NodeAgentSignerOptions) {
    this.#o = opts;
    this.#api = opts.kc.makeApiClient(CertificatesV1Api);
  }

  /** One pass; returns what it decided, by CSR name. */
  async check(): Promise<Array<{ name: string; outcome: 'issued' | 'denied'; reason: string }>> {
    const list = await this.#api.listCertificateSigningRequest({
      fieldSelector: `spec.signerName=${this.#o.signerName}`,
    });
    const decided: Array<{ name: string; outcome: 'issued' | 'denied'; reason: string }> = [];
    for (const csr of list.items) {
      if (csr.status?.certificate || conditionOf(csr, 'Denied') || conditionOf(csr, 'Failed')) continue;
      const name = csr.metadata?.name as string;
      try {
        const d = await this.#decide(csr);
        decided.push({ name, ...d });
        this.#o.onDecision?.(d.outcome, d.reason);
      } catch (err) {
        this.#o.log.warn({ csr: name, err: (err as Error).message }, 'node-agent CSR not decided; retrying');
      }
    }
    return decided;
  }

  async #decide(csr: V1CertificateSigningRequest): Promise<{ outcome: 'issued' | 'denied'; reason: string }> {
    const name = csr.metadata?.name as string;
    const j = await judgeNodeAgentCSR(csr, { requester: this.#o.requester, validityMs: this.#o.validityMs });
    const now = (this.#o.now ?? (() => new Date()))();
    if (!j.ok) {
      await this.#setApproval(csr, { type: 'Denied', reason: j.reason, message: j.message }, now);
      this.#o.log.warn(
        { csr: name, requester: csr.spec.username, reason: j.reason, message: j.message },
        'node-agent CSR denied',
      );
      return { outcome: 'denied', reason: j.reason };
    }
    let current = csr;
    if (!conditionOf(csr, 'Approved')) {
      current = await this.#setApproval(
        csr,
        {
          type: 'Approved',
          reason: 'NodeIdentityVerified',
          message: `the requester's token is bound to node ${j.nodeName}`,
        },
        now,
      );
    }
    const certPem = await signLeaf(
      await this.#o.ca(),
      j.publicKey,
      { cn: NODE_AGENT_CN, dnsNames: [nodeAgentServerName(j.nodeName)], usage: 'server' },
      j.validityMs,
      now,
    );
    await this.#api.replaceCertificateSigningRequestStatus({
      name,
      body: {
        ...current,
        status: { ...current.status, certificate: Buffer.from(certPem).toString('base64') },
      },
    });
    this.#o.log.info({ csr: name, node: j.nodeName }, 'node-agent serving certificate issued');
    return { outcome: 'issued', reason: 'NodeIdentityVerified' };
  }

  /** Adds an Approved or Denied condition through the approval subresource. */
  #setApproval(
    csr: V1CertificateSigningRequest,
    c: { type: 'Approved' | 'Denied'; reason: string; message: string },
    now: Date,
  ): Promise<V1CertificateSigningRequest> {
    return this.#api.replaceCertificateSigningRequestApproval({
      name: csr.metadata?.name as string,
      body: {
        ...csr,
        status: {
          ...csr.status,
          conditions: [...(csr.status?.conditions ?? []), { ...c, status: 'True', lastUpdateTime: now }],
        },
      },
    });
  }

  /** Checks now and then every `intervalMs` (a pass never overlaps the previous one). */
  start(intervalMs: number): void {
    this.#stop = startPeriodic(
      () => this.check(),
      intervalMs,
      (err) => this.#o.log.warn({ err: err.message }, 'node-agent CSR check failed; retrying later'),
      { immediately: true },
    );
  }

  stop(): void {
    this.#stop?.();
    this.#stop = undefined;
  }
}
