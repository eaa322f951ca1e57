import { createNodeAgentClient, type NodeAgentClient } from '@waggle/node-agent/client';

/** One node-agent client per endpoint, created on first use. */
export class AgentClients {
  readonly #clients = new Map<string, NodeAgentClient>();
  readonly #factory: (endpoint: string) => NodeAgentClient;

  constructor(factory: (endpoint: string) => NodeAgentClient = createNodeAgentClient) {
    this.#factory = factory;
  }

  for(endpoint: string): NodeAgentClient {
    let c = this.#clients.get(endpoint);
    if (!c) {
      c = this.#factory(endpoint);
      this.#clients.set(endpoint, c);
    }
    return c;
  }
}
