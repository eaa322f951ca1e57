// The typed node-agent client for the operator and the MCP gateway. They import only this
// module (`@waggle/node-agent/client`), never the VM runtime.
import { type Client, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { NodeAgentService } from './gen/waggle/nodeagent/v1/node_agent_pb.js';

export { Code, ConnectError } from '@connectrpc/connect';
export * from './gen/waggle/nodeagent/v1/node_agent_pb.js';

export type NodeAgentClient = Client<typeof NodeAgentService>;

/** A client for the node-agent at `baseUrl` (e.g. http://10.0.0.5:7443), over HTTP/2. */
export function createNodeAgentClient(baseUrl: string): NodeAgentClient {
  return createClient(NodeAgentService, createConnectTransport({ baseUrl, httpVersion: '2' }));
}
