import type { TLSSocket } from 'node:tls';
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextKey,
  createContextValues,
  type Interceptor,
} from '@connectrpc/connect';
import type { FastifyRequest } from 'fastify';

/**
 * What each client identity (the CN of its certificate, issued by the chart) may call. The
 * operator manages VM lifecycles; the gateway runs code and moves files in VMs that exist. A
 * certificate the CA signed for anyone else (a node-agent's own serving certificate, say) may
 * call nothing.
 */
export const CLIENT_PERMISSIONS: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  [
    'waggle-operator',
    new Set([
      'CreateVM',
      'GetVM',
      'ListVMs',
      'DestroyVM',
      'GetNodeInfo',
      'SuspendVM',
      'ResumeVM',
      'SetWarmPools',
      'PullImage',
    ]),
  ],
  [
    'waggle-gateway',
    new Set([
      'GetVM',
      'Exec',
      'WriteFile',
      'ReadFile',
      'ListFiles',
      'InstallPackages',
      'StartProcess',
      'ReadProcessOutput',
      'KillProcess',
      'ForwardPort',
      'GetNodeInfo',
    ]),
  ],
]);

/** The caller's certificate CN under mutual TLS; undefined on cleartext h2c (development). */
export const clientIdentity = createContextKey<string | undefined>(undefined, {
  description: 'client certificate common name',
});

/** Reads the verified peer certificate's CN from the request's TLS socket. */
export function clientIdentityValues(req: FastifyRequest): ContextValues {
  const values = createContextValues();
  const socket = req.raw.socket as Partial<TLSSocket> | undefined;
  if (socket?.encrypted && typeof socket.getPeerCertificate === 'function') {
    const cn = socket.getPeerCertificate().subject?.CN;
    // An empty string marks "TLS, but no usable name": denied, never treated as cleartext.
    values.set(clientIdentity, Array.isArray(cn) ? (cn[0] ?? '') : (cn ?? ''));
  }
  return values;
}

export function isAllowed(identity: string | undefined, method: string): boolean {
  if (identity === undefined) return true; // cleartext h2c: no identities to check
  return CLIENT_PERMISSIONS.get(identity)?.has(method) ?? false;
}

/** Refuses RPCs the caller's identity may not make (PermissionDenied, before any work). */
export const authorizeClients: Interceptor = (next) => async (req) => {
  const identity = req.contextValues.get(clientIdentity);
  if (!isAllowed(identity, req.method.name)) {
    throw new ConnectError(
      `client "${identity}" may not call ${req.method.name}` +
        (identity && CLIENT_PERMISSIONS.has(identity)
          ? ''
          : ` (known clients: ${[...CLIENT_PERMISSIONS.keys()].join(', ')})`),
      Code.PermissionDenied,
    );
  }
  return next(req);
};
