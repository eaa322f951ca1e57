/**
 * DNS-rebinding protection (MCP spec: validate Origin; refuse a bad one with 403). A browser page
 * from another site can only reach the gateway if it can make the browser send our Host with its
 * own Origin — so both are checked against allow-lists.
 */
export interface OriginPolicy {
  /** Host names (without port) the gateway answers to; undefined = any. */
  allowedHosts?: string[];
  /** Exact origins (scheme://host[:port]) allowed to call; loopback origins are allowed when `loopback`. */
  allowedOrigins: string[];
  /** The gateway listens on loopback only: then loopback Hosts/Origins are the default allow-list. */
  loopback: boolean;
}

const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]', '::1'];

const hostnameOf = (hostHeader: string): string => {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const i = h.lastIndexOf(':');
  return i === -1 ? h : h.slice(0, i);
};

/** Resolves the effective policy: explicit lists win; a loopback gateway defaults to loopback hosts. */
export function makeOriginPolicy(opts: {
  allowedHosts?: string[] | undefined;
  allowedOrigins?: string[] | undefined;
  loopback: boolean;
}): OriginPolicy {
  const hosts = opts.allowedHosts?.map((h) => h.toLowerCase());
  return {
    ...(hosts ? { allowedHosts: hosts } : opts.loopback ? { allowedHosts: LOOPBACK_HOSTS } : {}),
    allowedOrigins: (opts.allowedOrigins ?? []).map((o) => o.toLowerCase().replace(/\/+$/, '')),
    loopback: opts.loopback,
  };
}

/** Returns why the request must be refused, or undefined when it may proceed. */
export function checkOrigin(
  policy: OriginPolicy,
  headers: { host?: string | undefined; origin?: string | undefined },
): string | undefined {
  if (policy.allowedHosts) {
    const host = headers.host ? hostnameOf(headers.host) : '';
    if (!policy.allowedHosts.includes(host)) {
      return `Host "${headers.host ?? ''}" is not allowed (allowed: ${policy.allowedHosts.join(', ')}; set WAGGLE_ALLOWED_HOSTS)`;
    }
  }
  const origin = headers.origin;
  if (origin === undefined) return undefined; // not a browser: nothing to rebind
  const o = origin.toLowerCase().replace(/\/+$/, '');
  if (policy.allowedOrigins.includes(o)) return undefined;
  if (policy.loopback) {
    try {
      const u = new URL(o);
      if ((u.protocol === 'http:' || u.protocol === 'https:') && LOOPBACK_HOSTS.includes(u.hostname))
        return undefined;
    } catch {
      // fall through: not a URL
    }
  }
  return `Origin "${origin}" is not allowed (set WAGGLE_ALLOWED_ORIGINS to permit a browser-based client)`;
}
