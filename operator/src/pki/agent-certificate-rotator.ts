import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { startPeriodic } from '../runtime/periodic.ts';
import { createAgentCA, issueLeaf, type LeafSpec, renewalReason } from './leaf-certificates.ts';

/** A Secret (`ca.crt`, `tls.crt`, `tls.key`) holding one node-agent mTLS identity. */
export interface ManagedLeaf {
  secret: string;
  spec: LeafSpec;
}

export interface AgentCertificateRotatorOptions {
  kc: KubeConfig;
  namespace: string;
  /**
   * Secret with `ca.crt` and `ca.key`, mounted by no pod. Made here when absent (the chart does
   * not template it, so the CA key is in no Helm release), and made anew when deleted.
   */
  caSecret: string;
  /** ConfigMap that publishes `ca.crt` to node-agents (they verify client certificates with it). */
  caConfigMap?: string;
  /** Validity of a CA made here (default 10 years; replace it by deleting the Secret). */
  caValidityMs?: number;
  /** Labels of the Secrets and ConfigMap made here (so an uninstall can find them). */
  labels?: Record<string, string>;
  leaves: readonly ManagedLeaf[];
  validityMs: number;
  log: Logger;
  onRenewed?: (secret: string, reason: string) => void;
  now?: () => Date;
}

const decode = (v: string | undefined) => (v ? Buffer.from(v, 'base64').toString('utf8') : undefined);
const encode = (v: string) => Buffer.from(v, 'utf8').toString('base64');

/**
 * Keeps the node-agent mTLS certificates short-lived, as KubeVirt does: the leader checks each
 * leaf Secret and reissues it from the CA when it is in the last third of its life (or longer-
 * lived than the policy, as the chart's initial ones are). The kubelet refreshes the mounted
 * files and every component re-reads them (`watchAgentTls`), so nothing restarts.
 */
export class AgentCertificateRotator {
  readonly #o: AgentCertificateRotatorOptions;
  readonly #api: CoreV1Api;
  #stop: (() => void) | undefined;

  constructor(opts: AgentCertificateRotatorOptions) {
    this.#o = opts;
    this.#api = opts.kc.makeApiClient(CoreV1Api);
  }

  /** The CA, made (and published) first when its Secret does not exist. */
  async ca(): Promise<{ certPem: string; keyPem: string }> {
    const { namespace, caSecret } = this.#o;
    const read = () =>
      this.#api.readNamespacedSecret({ name: caSecret, namespace }).catch((err: { code?: number }) => {
        if (err.code === 404) return undefined;
        throw err;
      });
    let secret = await read();
    if (!secret) {
      const made = await createAgentCA(`${caSecret}`, this.#o.caValidityMs ?? 10 * 365 * 86_400_000);
      try {
        secret = await this.#api.createNamespacedSecret({
          namespace,
          body: {
            metadata: { name: caSecret, namespace, labels: this.#o.labels ?? {} },
            type: 'Opaque',
            data: { 'ca.crt': encode(made.certPem), 'ca.key': encode(made.keyPem) },
          },
        });
        this.#o.log.info({ secret: caSecret }, 'node-agent CA created');
      } catch (err) {
        if ((err as { code?: number }).code !== 409) throw err;
        secret = await read(); // another leader made it first
      }
    }
    const certPem = decode(secret?.data?.['ca.crt']);
    const keyPem = decode(secret?.data?.['ca.key']);
    if (!certPem || !keyPem) throw new Error(`Secret ${namespace}/${caSecret} lacks ca.crt or ca.key`);
    if (this.#o.caConfigMap) await this.#publish(certPem);
    return { certPem, keyPem };
  }

  async #publish(caCertPem: string): Promise<void> {
    const { namespace } = this.#o;
    const name = this.#o.caConfigMap as string;
    const current = await this.#api
      .readNamespacedConfigMap({ name, namespace })
      .catch((err: { code?: number }) => {
        if (err.code === 404) return undefined;
        throw err;
      });
    if (current?.data?.['ca.crt'] === caCertPem) return;
    if (current) {
      await this.#api.replaceNamespacedConfigMap({
        name,
        namespace,
        body: { ...current, data: { ...current.data, 'ca.crt': caCertPem } },
      });
    } else {
      await this.#api.createNamespacedConfigMap({
        namespace,
        body: { metadata: { name, namespace, labels: this.#o.labels ?? {} }, data: { 'ca.crt': caCertPem } },
      });
    }
    this.#o.log.info({ configMap: name }, 'node-agent CA published');
  }

  /** One pass; returns the Secrets it renewed, with the reason. */
  async check(): Promise<Array<{ secret: string; reason: string }>> {
    const { namespace } = this.#o;
    const { certPem: caCertPem, keyPem: caKeyPem } = await this.ca();
    const now = (this.#o.now ?? (() => new Date()))();
    const renewed: Array<{ secret: string; reason: string }> = [];
    for (const leaf of this.#o.leaves) {
      const current: V1Secret | undefined = await this.#api
        .readNamespacedSecret({ name: leaf.secret, namespace })
        .catch((err: { code?: number }) => {
          if (err.code === 404) return undefined;
          throw err;
        });
      const reason = renewalReason(
        decode(current?.data?.['tls.crt']),
        caCertPem,
        leaf.spec,
        this.#o.validityMs,
        now,
      );
      if (!reason) continue;
      const issued = await issueLeaf(
        { certPem: caCertPem, keyPem: caKeyPem },
        leaf.spec,
        this.#o.validityMs,
        now,
      );
      const data = {
        'ca.crt': encode(caCertPem),
        'tls.crt': encode(issued.certPem),
        'tls.key': encode(issued.keyPem),
      };
      if (current) {
        // resourceVersion makes a concurrent change fail (409) instead of being overwritten.
        await this.#api.replaceNamespacedSecret({
          name: leaf.secret,
          namespace,
          body: { ...current, data },
        });
      } else {
        await this.#api.createNamespacedSecret({
          namespace,
          body: {
            metadata: { name: leaf.secret, namespace, labels: this.#o.labels ?? {} },
            type: 'Opaque',
            data,
          },
        });
      }
      renewed.push({ secret: leaf.secret, reason });
      this.#o.log.info({ secret: leaf.secret, cn: leaf.spec.cn, reason }, 'agent certificate renewed');
      this.#o.onRenewed?.(leaf.secret, reason);
    }
    return renewed;
  }

  /** Checks now and then every `intervalMs` (a pass never overlaps the previous one). */
  start(intervalMs: number): void {
    this.#stop = startPeriodic(
      () => this.check(),
      intervalMs,
      (err) => this.#o.log.warn({ err: err.message }, 'agent certificate check failed; retrying later'),
      { immediately: true },
    );
  }

  stop(): void {
    this.#stop?.();
    this.#stop = undefined;
  }
}
