// The typed node-agent client for the operator and the MCP gateway. They import only this
// module (`@waggle/node-agent/client`), never the VM runtime.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Client, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { NodeAgentService } from './gen/waggle/nodeagent/v1/node_agent_pb.js';

export { Code, ConnectError } from '@connectrpc/connect';
export * from './gen/waggle/nodeagent/v1/node_agent_pb.js';

export type NodeAgentClient = Client<typeof NodeAgentService>;

/**
 * Mutual TLS towards node-agents: the CA that signed the agents' serving certificate, this
 * client's certificate and key, and the name the agents' certificate carries (agents are
 * addressed by node IP, so the name is checked instead of the IP).
 */
export interface AgentTls {
  ca: string;
  cert: string;
  key: string;
  serverName: string;
}

/** The DNS name in every node-agent serving certificate the chart issues. */
export const AGENT_TLS_SERVER_NAME = 'waggle-node-agent';

/** Reads `ca.crt`, `tls.crt` and `tls.key` from a directory (a mounted Secret). */
export function loadAgentTls(dir: string, serverName = AGENT_TLS_SERVER_NAME): AgentTls {
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { ca: read('ca.crt'), cert: read('tls.crt'), key: read('tls.key'), serverName };
}

/**
 * A client for the node-agent at `baseUrl` over HTTP/2: `http://…` is cleartext h2c (local
 * development and tests), `https://…` needs `tls` and authenticates both sides.
 */
export function createNodeAgentClient(baseUrl: string, tls?: AgentTls): NodeAgentClient {
  if (baseUrl.startsWith('https:') && !tls) {
    throw new Error(
      `node-agent ${baseUrl} uses TLS: configure the client certificate (WAGGLE_AGENT_TLS_DIR)`,
    );
  }
  return createClient(
    NodeAgentService,
    createConnectTransport({
      baseUrl,
      httpVersion: '2',
      ...(tls && baseUrl.startsWith('https:')
        ? { nodeOptions: { ca: tls.ca, cert: tls.cert, key: tls.key, servername: tls.serverName } }
        : {}),
    }),
  );
}
