import { createHash } from 'node:crypto';
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { ENVIRONMENT_PLURAL, GROUP } from '@waggle/crds';
import { AuthError } from '../errors.ts';
import { type AuthContext, type Authenticator, type Caller, makeCaller } from './caller.ts';
import { KeyedBuckets, TokenBucket } from './rate-limit.ts';

/** What a caller must be allowed on waggleenvironments in its namespace to use the tools. */
const AGENT_VERBS = ['create', 'get', 'list', 'delete'] as const;

const SA_PREFIX = 'system:serviceaccount:';

interface Cached {
  at: number;
  caller?: Caller;
  error?: AuthError;
}

/** What a TokenReview answered, for a metric. */
export type ReviewOutcome = 'authenticated' | 'unauthenticated' | 'wrong_audience' | 'error';

export interface TokenAuthOptions {
  /** Audiences a token must be issued for (TokenReview spec.audiences); unset: the apiserver's. */
  audiences?: string[];
  /** How long an accepted token/namespace decision is kept. */
  ttlMs: number;
  /** How long a refused token (401) or a denied namespace (403) is remembered. */
  negativeTtlMs?: number;
  /** Failed authentications one client address may cause per minute (burst as large). */
  failuresPerMinute?: number;
  /** TokenReviews per second for tokens not in the cache, all clients together (burst 2×). */
  reviewsPerSecond?: number;
  /** Most decisions kept (each of the two caches); the oldest are dropped first. */
  maxEntries?: number;
  /**
   * While the apiserver cannot be asked (down, unreachable), an accepted decision older than
   * `ttlMs` but younger than this still stands, so callers already working keep working through
   * a control-plane outage; 0 turns it off. A token revoked meanwhile works that much longer.
   */
  staleOnErrorMs?: number;
  onReview?: (outcome: ReviewOutcome) => void;
  onStale?: () => void;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * Kubernetes tokens: TokenReview says who the caller is; SubjectAccessReview says whether RBAC
 * lets them create waggleenvironments in the namespace (their ServiceAccount's, unless the
 * request names another). Decisions are cached per token and namespace for `ttlMs` (like the
 * apiserver's own webhook token cache), so an exec round trip does not pay two API calls.
 *
 * Tokens nobody accepts cost no more than they must: a refused token is remembered (by hash)
 * for `negativeTtlMs`, concurrent requests with one token share one review, an address that
 * keeps sending bad tokens is refused with 429 before any review (`failuresPerMinute`), and all
 * reviews of unknown tokens together are rate limited (`reviewsPerSecond`). Tokens already
 * accepted are answered from the cache and never limited; the refusals live in a cache of their
 * own, so a flood of bad tokens cannot push good ones out.
 */
export class KubernetesTokenAuthenticator implements Authenticator {
  readonly #authn: AuthenticationV1Api;
  readonly #authz: AuthorizationV1Api;
  readonly #audiences: string[] | undefined;
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #maxEntries: number;
  readonly #cache = new Map<string, Cached>();
  /** Refused tokens (any namespace), by hash: when they stop being refused, and why. */
  readonly #refused = new Map<string, { until: number; error?: AuthError }>();
  readonly #inflight = new Map<string, Promise<Caller | undefined>>();
  readonly #failures: KeyedBuckets;
  readonly #reviews: TokenBucket;
  readonly #onReview: ((o: ReviewOutcome) => void) | undefined;
  readonly #staleOnErrorMs: number;
  readonly #onStale: (() => void) | undefined;

  constructor(kc: KubeConfig, opts: TokenAuthOptions) {
    this.#authn = kc.makeApiClient(AuthenticationV1Api);
    this.#authz = kc.makeApiClient(AuthorizationV1Api);
    this.#audiences = opts.audiences?.length ? opts.audiences : undefined;
    this.#ttlMs = opts.ttlMs;
    this.#negativeTtlMs = Math.min(opts.negativeTtlMs ?? 10_000, opts.ttlMs);
    this.#maxEntries = opts.maxEntries ?? 10_000;
    const perMinute = opts.failuresPerMinute ?? 30;
    this.#failures = new KeyedBuckets({ burst: perMinute, perSecond: perMinute / 60 });
    const perSecond = opts.reviewsPerSecond ?? 20;
    this.#reviews = new TokenBucket(perSecond * 2, perSecond);
    this.#onReview = opts.onReview;
    this.#staleOnErrorMs = opts.staleOnErrorMs ?? 0;
    this.#onStale = opts.onStale;
  }

  async authenticate(
    token: string,
    requestedNamespace?: string,
    ctx: AuthContext = {},
  ): Promise<Caller | undefined> {
    const tokenHash = sha256(token);
    const key = `${tokenHash}/${requestedNamespace ?? ''}`;
    const now = Date.now();
    const refused = this.#refused.get(tokenHash);
    if (refused && now < refused.until) {
      if (refused.error) throw refused.error;
      return undefined;
    }
    const hit = this.#cache.get(key);
    if (hit && now - hit.at < (hit.caller ? this.#ttlMs : this.#negativeTtlMs)) {
      if (hit.error) throw hit.error;
      return hit.caller;
    }
    const pending = this.#inflight.get(key);
    if (pending) return pending;

    // A review is needed: limit what unknown tokens may cost. The address pays for the review up
    // front (so a burst of concurrent requests cannot all pass) and is refunded if it succeeds.
    const source = ctx.source ?? 'unknown';
    if (!this.#failures.take(source, now)) {
      const wait = Math.ceil(this.#failures.retryAfterMs(source, now) / 1000);
      throw new AuthError(
        429,
        `too many failed authentications from ${source}; new tokens from this address are refused ` +
          `for ${wait} s (WAGGLE_AUTH_FAILURES_PER_MINUTE). Check the token you send: a ServiceAccount ` +
          'token from kubectl create token, or an API key.',
        wait,
      );
    }
    if (!this.#reviews.take(now)) {
      this.#failures.refund(source, now);
      const wait = Math.max(1, Math.ceil(this.#reviews.retryAfterMs(now) / 1000));
      throw new AuthError(
        429,
        `the gateway is checking too many new tokens at once (WAGGLE_TOKEN_REVIEWS_PER_SECOND); retry in ${wait} s`,
        wait,
      );
    }
    const review = this.#decide(token, tokenHash, key, requestedNamespace, source).finally(() =>
      this.#inflight.delete(key),
    );
    this.#inflight.set(key, review);
    return review;
  }

  async #decide(
    token: string,
    tokenHash: string,
    key: string,
    requestedNamespace: string | undefined,
    source: string,
  ): Promise<Caller | undefined> {
    const now = Date.now();
    try {
      const caller = await this.#review(token, requestedNamespace);
      if (caller) {
        this.#failures.refund(source);
        this.#remember(this.#cache, key, { at: now, caller });
      } else this.#remember(this.#refused, tokenHash, { until: now + this.#negativeTtlMs });
      return caller;
    } catch (err) {
      if (err instanceof AuthError && err.status === 401) {
        this.#remember(this.#refused, tokenHash, { until: now + this.#negativeTtlMs, error: err });
      } else if (err instanceof AuthError) {
        // A valid token without RBAC in the namespace: not the address's fault.
        this.#failures.refund(source);
        this.#remember(this.#cache, key, { at: now, error: err });
      } else {
        this.#failures.refund(source);
        this.#onReview?.('error');
        // The apiserver could not be asked: a decision it made recently still stands.
        const stale = this.#cache.get(key);
        if (stale?.caller && now - stale.at < this.#staleOnErrorMs) {
          this.#onStale?.();
          return stale.caller;
        }
      }
      throw err;
    }
  }

  /** Sets a cache entry; beyond `maxEntries` the oldest entries go first. */
  #remember<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key);
    map.set(key, value);
    while (map.size > this.#maxEntries) map.delete(map.keys().next().value as string);
  }

  async #review(token: string, requestedNamespace: string | undefined): Promise<Caller | undefined> {
    const review = await this.#authn.createTokenReview({
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, ...(this.#audiences ? { audiences: this.#audiences } : {}) },
      },
    });
    const user = review.status?.user;
    const audiences = this.#audiences;
    if (audiences && !review.status?.authenticated && /audience/i.test(review.status?.error ?? '')) {
      this.#onReview?.('wrong_audience');
      throw new AuthError(401, wrongAudience(audiences));
    }
    if (!review.status?.authenticated || !user?.username) {
      this.#onReview?.('unauthenticated');
      return undefined;
    }
    // An audience-aware apiserver answers with the audience it matched (TokenReview API docs).
    if (audiences && !review.status.audiences?.some((a) => audiences.includes(a))) {
      this.#onReview?.('wrong_audience');
      throw new AuthError(401, wrongAudience(audiences));
    }
    this.#onReview?.('authenticated');
    const username = user.username;
    const saNamespace = username.startsWith(SA_PREFIX)
      ? username.slice(SA_PREFIX.length).split(':')[0]
      : undefined;
    const namespace = requestedNamespace ?? saNamespace;
    if (!namespace) {
      throw new AuthError(
        403,
        `${username} is not a ServiceAccount; say which namespace to use with the X-Waggle-Namespace header`,
      );
    }
    // The tools create, read, list and delete environments: the caller needs each of those verbs
    // itself (the gateway's own, broader permissions must never stand in for the caller's).
    const denied: string[] = [];
    await Promise.all(
      AGENT_VERBS.map(async (verb) => {
        const sar = await this.#authz.createSubjectAccessReview({
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SubjectAccessReview',
            spec: {
              user: username,
              ...(user.groups ? { groups: user.groups } : {}),
              ...(user.uid ? { uid: user.uid } : {}),
              ...(user.extra ? { extra: user.extra } : {}),
              resourceAttributes: { namespace, verb, group: GROUP, resource: ENVIRONMENT_PLURAL },
            },
          },
        });
        if (!sar.status?.allowed) denied.push(verb);
      }),
    );
    if (denied.length) {
      const missing = AGENT_VERBS.filter((v) => denied.includes(v));
      throw new AuthError(
        403,
        `${username} may not use waggleenvironments in namespace "${namespace}": it lacks ` +
          `${missing.map((v) => `"${v}"`).join(', ')} on waggleenvironments.${GROUP} there ` +
          `(grant ${AGENT_VERBS.join(', ')} — a RoleBinding to the waggle-agent ClusterRole does)`,
      );
    }
    return makeCaller(username, namespace);
  }
}

const wrongAudience = (audiences: string[]) =>
  `the token is not meant for Waggle: it was not issued for the audience ${audiences.map((a) => `"${a}"`).join(' or ')} ` +
  `(WAGGLE_TOKEN_AUDIENCES). Mint one with: kubectl create token <serviceaccount> -n <namespace> ` +
  `--audience ${audiences[0]} --duration 24h`;
