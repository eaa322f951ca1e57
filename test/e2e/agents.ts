import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ensureKubeBinaries } from '../src/kube-binaries.ts';
import { RELEASE, RELEASE_NAMESPACE } from '../src/stack.ts';

const run = promisify(execFile);

/** kubectl against the e2e cluster; throws with stderr. */
export function kubectlFor(kubeconfig: string) {
  return async (args: string[], input?: string): Promise<string> => {
    const { kubectl } = await ensureKubeBinaries(['kubectl']);
    const child = run(kubectl, args, {
      env: { ...process.env, KUBECONFIG: kubeconfig },
      maxBuffer: 32 << 20,
    });
    if (input !== undefined) child.child.stdin?.end(input);
    try {
      return (await child).stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`kubectl ${args.join(' ')}: ${(e.stderr || e.message).trim()}`);
    }
  };
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
  await k(['create', 'namespace', namespace, '--dry-run=client', '-o', 'yaml']).then((y) =>
    k(['apply', '-f', '-'], y),
  );
  await k(['create', 'serviceaccount', 'agent', '-n', namespace, '--dry-run=client', '-o', 'yaml']).then(
    (y) => k(['apply', '-f', '-'], y),
  );
  await k([
    'create',
    'rolebinding',
    'waggle-agent',
    '-n',
    namespace,
    `--clusterrole=${RELEASE}-agent`,
    `--serviceaccount=${namespace}:agent`,
    '--dry-run=client',
    '-o',
    'yaml',
  ]).then((y) => k(['apply', '-f', '-'], y));
  const token = (await k(['create', 'token', 'agent', '-n', namespace, '--duration=1h'])).trim();
  const ip = (
    await k(['get', 'svc', '-n', RELEASE_NAMESPACE, `${RELEASE}-mcp`, '-o', 'jsonpath={.spec.clusterIP}'])
  ).trim();
  const client = new Client({ name: `agent-${namespace}`, version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`http://${ip}:8080/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    }),
  );
  const call = async (tool: string, args: Record<string, unknown>) =>
    (await client.callTool({ name: tool, arguments: args }, undefined, { timeout: 900_000 })) as Result;
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
    close: () => client.close(),
  };
}

export const text = (r: Result) => r.content.map((c) => c.text ?? '').join('\n');
