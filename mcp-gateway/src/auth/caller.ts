import { createHash } from 'node:crypto';

/** Who is calling, and the one namespace their environments live in. */
export interface Caller {
  /** e.g. system:serviceaccount:team-a:agent, apikey:ci-bot, anonymous */
  principal: string;
  namespace: string;
  /** Short stable hash of the principal, used as a label value on environments. */
  id: string;
}

export function makeCaller(principal: string, namespace: string): Caller {
  return {
    principal,
    namespace,
    id: createHash('sha256').update(principal).digest('hex').slice(0, 16),
  };
}

/** Where a request comes from, for limits on failed authentications. */
export interface AuthContext {
  /** The client's address (the TCP peer). */
  source?: string | undefined;
}

/** Turns a bearer token into a Caller; `undefined` means "not a token I know" (try the next). */
export interface Authenticator {
  authenticate(
    token: string,
    requestedNamespace: string | undefined,
    ctx?: AuthContext,
  ): Promise<Caller | undefined>;
}

/** Chains authenticators: the first that recognises the token decides. */
export function chainAuthenticators(list: Authenticator[]): Authenticator {
  return {
    async authenticate(token, ns, ctx) {
      for (const a of list) {
        const c = await a.authenticate(token, ns, ctx);
        if (c) return c;
      }
      return undefined;
    },
  };
}
