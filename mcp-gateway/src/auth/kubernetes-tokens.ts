import { createHash } from 'node:crypto';
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { ENVIRONMENT_PLURAL, GROUP } from '@waggle/crds';
import { AuthError } from '../errors.ts';
import { type Authenticator, type Caller, makeCaller } from './caller.ts';

/** What a caller must be allowed on waggleenvironments in its namespace to use the tools. */
const AGENT_VERBS = ['create', 'get', 'list', 'delete'] as const;

const SA_PREFIX = 'system:serviceaccount:';

interface Cached {
  at: number;
  caller?: Caller;
  error?: AuthError;
}

/**
 * Kubernetes tokens: TokenReview says who the caller is; SubjectAccessReview says whether RBAC
 * lets them create waggleenvironments in the namespace (their ServiceAccount's, unless the
 * request names another). Decisions are cached per token and namespace for `ttlMs` (like the
 * apiserver's own webhook token cache), so an exec round trip does not pay two API calls.
 */
export class KubernetesTokenAuthenticator implements Authenticator {
  readonly #authn: AuthenticationV1Api;
  readonly #authz: AuthorizationV1Api;
  readonly #audiences: string[] | undefined;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, Cached>();

  constructor(kc: KubeConfig, opts: { audiences?: string[]; ttlMs: number }) {
    this.#authn = kc.makeApiClient(AuthenticationV1Api);
    this.#authz = kc.makeApiClient(AuthorizationV1Api);
    this.#audiences = opts.audiences;
    this.#ttlMs = opts.ttlMs;
  }

  async authenticate(token: string, requestedNamespace: string | undefined): Promise<Caller | undefined> {
    const key = `${createHash('sha256').update(token).digest('hex')}/${requestedNamespace ?? ''}`;
    const now = Date.now();
    const hit = this.#cache.get(key);
    // Denials are cached briefly only, so a fixed RoleBinding takes effect quickly.
    if (hit && now - hit.at < (hit.caller ? this.#ttlMs : Math.min(this.#ttlMs, 5_000))) {
      if (hit.error) throw hit.error;
      return hit.caller;
    }
    if (this.#cache.size > 10_000) this.#cache.clear();
    try {
      const caller = await this.#review(token, requestedNamespace);
      this.#cache.set(key, { at: now, ...(caller ? { caller } : {}) });
      return caller;
    } catch (err) {
      if (err instanceof AuthError) this.#cache.set(key, { at: now, error: err });
      throw err;
    }
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
    if (!review.status?.authenticated || !user?.username) return undefined;
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
