// The typed node-agent client for the operator and the MCP gateway. They import only this
// module (`@waggle/node-agent/client`), never the VM runtime.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { type Client, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { NodeAgentService } from './gen/waggle/nodeagent/v1/node_agent_pb.js';

export { Code, ConnectError } from '@connectrpc/connect';
export { classifyNodeAgentError, type NodeAgentFailure } from './client-errors.ts';
export { ENV_ID_HEADER, formatEnvId, parseEnvId, withEnvId } from './env-id.ts';
export * from './gen/waggle/nodeagent/v1/node_agent_pb.js';
export { certificateExpiries } from './pki/certificate-expiry.ts';
export { fromProtoEgress, fromProtoRuntime, toProtoEgress, toProtoRuntime } from './proto-enums.ts';

export type NodeAgentClient = Client<typeof NodeAgentService>;

/**
 * Mutual TLS towards node-agents: the CA that signed the agents' serving certificates and this
 * client's certificate and key. Which agent is expected is named per client
 * (`nodeAgentServerName`): agents are addressed by node IP, so the name is checked instead.
 */
export interface AgentTls {
  ca: string;
  cert: string;
  key: string;
}

/** How often clients ping a node-agent's HTTP/2 session while it is quiet. */
export const NODE_AGENT_PING_INTERVAL_MS = 30_000;

/** The signer name of node-agent serving certificates when none is configured. */
export const DEFAULT_NODE_AGENT_SIGNER = 'waggle.dev/node-agent';

/**
 * The DNS name in the serving certificate of the node-agent on `nodeName` (and only there): the
 * operator signs it for the agent whose ServiceAccount token is bound to that node, and callers
 * expect it for the WaggleNode they mean to reach. Never a name a client identity carries.
 */
export function nodeAgentServerName(nodeName: string): string {
  return `${nodeName}.node-agent.waggle.dev`;
}

/** Reads `ca.crt`, `tls.crt` and `tls.key` from a directory (a mounted Secret). */
export function loadAgentTls(dir: string): AgentTls {
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { ca: read('ca.crt'), cert: read('tls.crt'), key: read('tls.key') };
}

/**
 * TLS material that follows its files: certificates are short-lived and the operator renews
 * them in their Secrets; the kubelet updates the mounted files, and this source re-reads them.
 */
export interface AgentTlsSource {
  current(): AgentTls;
  /** Increases whenever the material changed. */
  version(): number;
  close(): void;
}

/**
 * Watches a mounted Secret directory (by polling: Secret volumes are updated through symlink
 * swaps that file watchers miss). A half-updated or unreadable directory keeps the last good
 * material; `onChange` hears about each new version.
 */
/**
 * Throws unless the material can serve mutual TLS: the CA and the certificate parse and the key is
 * the certificate's. (An empty certificate — a file caught truncated mid-write, a Secret without
 * the key — would otherwise pass as "no certificate" to a TLS context.)
 */
export function assertUsableTls(tls: AgentTls): void {
  new X509Certificate(tls.ca);
  if (!new X509Certificate(tls.cert).checkPrivateKey(createPrivateKey(tls.key))) {
    throw new Error('the key is not the certificate’s');
  }
  createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key });
}

export function watchAgentTls(
  dir: string,
  opts: { intervalMs?: number; onChange?: (tls: AgentTls) => void } = {},
): AgentTlsSource {
  let tls = loadAgentTls(dir);
  let version = 0;
  const timer = setInterval(() => {
    let next: AgentTls;
    try {
      next = loadAgentTls(dir);
      if (next.ca === tls.ca && next.cert === tls.cert && next.key === tls.key) return;
      // Files caught mid-write are skipped: the next poll reads them whole.
      assertUsableTls(next);
    } catch {
      return; // keep the last good material; the next poll tries again
    }
    tls = next;
    version++;
    opts.onChange?.(tls);
  }, opts.intervalMs ?? 30_000);
  timer.unref();
  return { current: () => tls, version: () => version, close: () => clearInterval(timer) };
}

/**
 * A node-agent client that presents the source's current certificate and accepts only the
 * serving certificate of the agent on `nodeName`: when the material changes, the next call goes
 * through a new transport (new connections, new certificate).
 */
export function createRotatingNodeAgentClient(
  baseUrl: string,
  source: AgentTlsSource,
  nodeName: string,
): NodeAgentClient {
  refuseCleartext(baseUrl);
  let version = -1;
  let client: NodeAgentClient | undefined;
  const current = (): NodeAgentClient => {
    if (!client || source.version() !== version) {
      version = source.version();
      client = createNodeAgentClient(baseUrl, { ...source.current(), nodeName });
    }
    return client;
  };
  return new Proxy({} as NodeAgentClient, {
    get: (_target, method) => current()[method as keyof NodeAgentClient],
  });
}

function refuseCleartext(baseUrl: string): void {
  if (!baseUrl.startsWith('https:')) {
    throw new Error(
      `node-agent endpoint ${baseUrl} is not https: refusing to call it without TLS while mutual TLS is configured`,
    );
  }
}

/**
 * A client for the node-agent at `baseUrl` over HTTP/2: `http://…` is cleartext h2c (local
 * development and tests, only without `tls`), `https://…` needs `tls` and authenticates both
 * sides; the agent must present the certificate of `tls.nodeName` (`nodeAgentServerName`).
 */
export function createNodeAgentClient(
  baseUrl: string,
  tls?: AgentTls & { nodeName: string },
  opts: { pingIntervalMs?: number } = {},
): NodeAgentClient {
  if (baseUrl.startsWith('https:') && !tls) {
    throw new Error(
      `node-agent ${baseUrl} uses TLS: configure the client certificate (WAGGLE_AGENT_TLS_DIR)`,
    );
  }
  // With TLS configured a cleartext endpoint is refused, never silently used: a WaggleNode's
  // endpoint is written by its agent, and an `http://` one would skip both authentications.
  if (tls) refuseCleartext(baseUrl);
  return createClient(
    NodeAgentService,
    createConnectTransport({
      baseUrl,
      httpVersion: '2',
      // HTTP/2 pings keep a session with a long silent stream (an install, a quiet exec, an idle
      // preview connection) alive through servers and middleboxes that close idle sessions.
      pingIntervalMs: opts.pingIntervalMs ?? NODE_AGENT_PING_INTERVAL_MS,
      ...(tls
        ? {
            nodeOptions: {
              ca: tls.ca,
              cert: tls.cert,
              key: tls.key,
              servername: nodeAgentServerName(tls.nodeName),
            },
          }
        : {}),
    }),
  );
}
