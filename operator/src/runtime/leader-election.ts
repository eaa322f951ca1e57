import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export interface LeaderElectionOptions {
  kc: KubeConfig;
  namespace: string;
  name: string;
  /** This replica's identity (pod name). */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  log: Logger;
  /** For tests: the Lease API (default: made from `kc`). */
  api?: LeaseApi;
}

/** The Lease calls the elector makes. */
export type LeaseApi = Pick<
  CoordinationV1Api,
  'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'
>;

class AttemptTimedOutError extends Error {
  override name = 'AttemptTimedOutError';
}

/** Rejects when `p` has not settled within `ms` (the request itself is left to finish). */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AttemptTimedOutError(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease, following client-go: a candidate takes the
 * lease only when the holder's record has not changed for a whole lease duration *as observed
 * locally* (robust to clock skew); writes carry the resourceVersion, so two candidates cannot
 * both win; a leader that cannot renew within the renew deadline stops leading. Each attempt is
 * bounded (as client-go bounds it by the renew deadline): a hung apiserver call must not keep a
 * leader reconciling after a follower may already have taken the lease.
 */
export class LeaderElector {
  readonly #api: LeaseApi;
  readonly #o: Required<Omit<LeaderElectionOptions, 'kc' | 'api'>>;
  #observed: { holder: string; renewTime: string; resourceVersion: string } | undefined;
  #observedAt = 0;
  #leading = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #lastRenew = 0;

  constructor(opts: LeaderElectionOptions) {
    this.#api = opts.api ?? opts.kc.makeApiClient(CoordinationV1Api);
    const { api: _api, kc: _kc, ...rest } = opts;
    this.#o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...rest };
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  start(): void {
    const loop = async () => {
      if (this.#stopped) return;
      // A leader may wait only for what is left of its renew deadline; a candidate for one deadline.
      const budgetMs = this.#leading
        ? Math.max(1, this.#lastRenew + this.#o.renewDeadlineMs - Date.now())
        : this.#o.renewDeadlineMs;
      const ok = await within(this.#tryAcquireOrRenew(), budgetMs).catch((err: Error) => {
        this.#o.log.warn({ lease: this.#o.name, err: err.message }, 'lease update failed');
        return false;
      });
      if (ok) {
        this.#lastRenew = Date.now();
        if (!this.#leading) {
          this.#leading = true;
          this.#o.log.info({ lease: this.#o.name, identity: this.#o.identity }, 'became leader');
          this.#o.onStartedLeading();
        }
      } else if (this.#leading && Date.now() - this.#lastRenew > this.#o.renewDeadlineMs) {
        this.#leading = false;
        this.#o.log.warn({ lease: this.#o.name, identity: this.#o.identity }, 'lost leadership');
        this.#o.onStoppedLeading();
      }
      if (!this.#stopped) this.#timer = setTimeout(loop, this.#o.retryPeriodMs);
    };
    void loop();
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.#o;
    // Lease times are MicroTime (6 fractional digits); V1MicroTime serializes them that way.
    const micro = new V1MicroTime();
    const durationSeconds = Math.ceil(this.#o.leaseDurationMs / 1000);
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      await this.#api.createNamespacedLease({
        namespace,
        body: {
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: micro,
            renewTime: micro,
            leaseTransitions: 0,
          },
        },
      });
      return true;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renewTime = String(spec.renewTime ?? '');
    const rv = lease.metadata?.resourceVersion ?? '';
    if (!this.#observed || this.#observed.resourceVersion !== rv) {
      this.#observed = { holder, renewTime, resourceVersion: rv };
      this.#observedAt = Date.now();
    }
    const expired = Date.now() > this.#observedAt + (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (holder && holder !== identity && !expired) return false;
    const taking = holder !== identity;
    await this.#api.replaceNamespacedLease({
      name,
      namespace,
      body: {
        ...lease,
        spec: {
          ...spec,
          holderIdentity: identity,
          leaseDurationSeconds: durationSeconds,
          renewTime: micro,
          ...(taking ? { acquireTime: micro, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
        },
      },
    });
    return true;
  }

  /** Stops campaigning; a leader releases the lease so another replica can take over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (!this.#leading) return;
    this.#leading = false;
    try {
      const lease = await this.#api.readNamespacedLease({ name: this.#o.name, namespace: this.#o.namespace });
      if (lease.spec?.holderIdentity === this.#o.identity) {
        await this.#api.replaceNamespacedLease({
          name: this.#o.name,
          namespace: this.#o.namespace,
          body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 } },
        });
      }
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message }, 'could not release the lease');
    }
    this.#o.onStoppedLeading();
  }
}
