import type { Authenticator, Caller } from '../auth/caller.ts';
import { makeCaller } from '../auth/caller.ts';
import { AuthError } from '../errors.ts';

export const NAMESPACE_HEADER = 'x-waggle-namespace';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Authenticates one HTTP request from its headers (bearer token, optional namespace); `source`
 * is the client's address (failed authentications are limited per address).
 */
export type RequestAuthenticator = (
  headers: Record<string, string | string[] | undefined>,
  source?: string,
) => Promise<Caller>;

export function bearerAuth(authenticator: Authenticator): RequestAuthenticator {
  return async (headers, source) => {
    const raw = headers.authorization;
    const value = Array.isArray(raw) ? raw[0] : raw;
    const m = value?.match(/^Bearer\s+(\S+)\s*$/i);
    if (!m) {
      throw new AuthError(
        401,
        'missing bearer token: send "Authorization: Bearer <token>" with a Kubernetes ServiceAccount token or a Waggle API key',
      );
    }
    const nsRaw = headers[NAMESPACE_HEADER];
    const ns = Array.isArray(nsRaw) ? nsRaw[0] : nsRaw;
    if (ns !== undefined && (ns.length > 63 || !DNS_LABEL.test(ns))) {
      throw new AuthError(403, `X-Waggle-Namespace "${ns}" is not a valid namespace name`);
    }
    const caller = await authenticator.authenticate(m[1] as string, ns, { source });
    if (!caller)
      throw new AuthError(
        401,
        'the bearer token was not accepted (unknown API key, or an invalid or expired token)',
      );
    return caller;
  };
}

/** Insecure mode (loopback only): everyone is "anonymous" in one namespace. */
export function insecureAuth(namespace: string): RequestAuthenticator {
  const caller = makeCaller('anonymous', namespace);
  return async () => caller;
}
