import { createNodeAgentClient, type NodeAgentClient } from '@waggle/node-agent/client';

/**
 * Creates a client for the node-agent of `nodeName` at `endpoint`. With mutual TLS the client
 * accepts only that node's serving certificate, so the node name must be the WaggleNode the
 * caller means — never something read from the endpoint.
 */
export type AgentFactory = (endpoint: string, nodeName: string) => NodeAgentClient;

/** One node-agent client per node and endpoint, created on first use. */
export class AgentClients {
  readonly #clients = new Map<string, NodeAgentClient>();
  readonly #factory: AgentFactory;

  constructor(factory: AgentFactory = (endpoint) => createNodeAgentClient(endpoint)) {
    this.#factory = factory;
  }

  for(endpoint: string, nodeName: string): NodeAgentClient {
    const key = `${nodeName} ${endpoint}`;
    let c = this.#clients.get(key);
    if (!c) {
      c = this.#factory(endpoint, nodeName);
      this.#clients.set(key, c);
    }
    return c;
  }
}
