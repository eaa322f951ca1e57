import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { grantAgent, type Kubectl } from '../src/agent-identity.ts';
import { kubectlFor as localKubectl } from '../src/cluster/local-cluster.ts';
import { ensureKubeBinaries } from '../src/kube-binaries.ts';
import { connectClient, endSession, call as mcpCall } from '../src/mcp-client.ts';
import { RELEASE, RELEASE_NAMESPACE } from '../src/stack.ts';

/** kubectl against the e2e cluster; throws with stderr. */
export function kubectlFor(kubeconfig: string): Kubectl {
  return async (args, input) =>
    localKubectl((await ensureKubeBinaries(['kubectl'])).kubectl, kubeconfig)(args, input);
}

export type Result = {
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
  content: Array<{ type: string; text?: string }>;
};

/** An AI agent as the cluster sees it: a ServiceAccount allowed to use Waggle in its namespace. */
export interface Agent {
  namespace: string;
  client: Client;
  call(tool: string, args: Record<string, unknown>): Promise<Result>;
  ok<T = Record<string, unknown>>(tool: string, args: Record<string, unknown>): Promise<T>;
  close(): Promise<void>;
}

export async function newAgent(kubeconfig: string, namespace: string): Promise<Agent> {
  const k = kubectlFor(kubeconfig);
  const token = await grantAgent(k, { namespace });
  const ip = (
    await k(['get', 'svc', '-n', RELEASE_NAMESPACE, `${RELEASE}-mcp`, '-o', 'jsonpath={.spec.clusterIP}'])
  ).trim();
  const client = await connectClient(`http://${ip}:8080/mcp`, token, `agent-${namespace}`);
  const call = async (tool: string, args: Record<string, unknown>): Promise<Result> =>
    mcpCall(client, tool, args, { timeout: 900_000 });
  return {
    namespace,
    client,
    call,
    async ok<T>(tool: string, args: Record<string, unknown>) {
      const r = await call(tool, args);
      if (r.isError)
        throw new Error(`${namespace}: ${tool} failed: ${r.content.map((c) => c.text).join(' ')}`);
      return r.structuredContent as T;
    },
    close: () => endSession(client),
  };
}

export const text = (r: Result) => r.content.map((c) => c.text ?? '').join('\n');
