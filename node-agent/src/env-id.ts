// The environment correlation id in logs (`envId`: "<namespace>/<name>" of the
// WaggleEnvironment). The operator and the gateway log it from the object; they tell the
// node-agent with every call about an environment in the `waggle-env-id` header, and the agent
// logs it. Only for logs: the agent never trusts it for anything (the VM is named by `vmId`, the
// caller by its client certificate), and takes it only in the shape Kubernetes names have.

/** The request header naming the environment a node-agent call is about. */
export const ENV_ID_HEADER = 'waggle-env-id';

/** A namespace (DNS label, ≤ 63) + "/" + an object name (DNS subdomain, ≤ 253). */
export const MAX_ENV_ID_LENGTH = 63 + 1 + 253;

const ENV_ID = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9](?:[-.a-z0-9]{0,251}[a-z0-9])?$/;

/** The log id of the environment `name` in `namespace`. */
export function formatEnvId(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/**
 * `raw` when it is a well-formed environment id, else undefined: a caller-supplied value is
 * bounded and limited to the characters of Kubernetes names, so it cannot forge log fields or
 * lines, or bloat them.
 */
export function parseEnvId(raw: string | null | undefined): string | undefined {
  if (!raw || raw.length > MAX_ENV_ID_LENGTH) return undefined;
  return ENV_ID.test(raw) ? raw : undefined;
}

/**
 * The node-agent `client` with every call carrying `envId` in the `waggle-env-id` header (the
 * call's own headers kept). Use one per environment for the calls about it; an id that is not
 * well-formed is left out rather than failing the call.
 */
export function withEnvId<T extends object>(client: T, envId: string): T {
  if (!parseEnvId(envId)) return client;
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (input: unknown, opts?: { headers?: ConstructorParameters<typeof Headers>[0] }) => {
        const headers = new Headers(opts?.headers);
        headers.set(ENV_ID_HEADER, envId);
        return (value as (i: unknown, o: unknown) => unknown).call(target, input, { ...opts, headers });
      };
    },
  });
}
