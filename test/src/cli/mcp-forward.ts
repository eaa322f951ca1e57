// The loopback forward `pnpm waggle up` puts in front of the gateway's ClusterIP Service, shared
// by up (starts it), down (stops it) and status (checks it).
import { join } from 'node:path';
import type { DaemonSpec } from '../cluster/daemons.ts';
import { clusterPaths } from '../cluster/layout.ts';
import { postInitialize } from '../mcp-client.ts';

export const MCP_PORT = Number(process.env.WAGGLE_UP_PORT ?? 8080);
export const MCP_URL = `http://127.0.0.1:${MCP_PORT}/mcp`;

/** The forwarder daemon towards `target` (host:port); `-` when only stopping or looking it up. */
export function mcpForwarder(target: string): DaemonSpec {
  const p = clusterPaths();
  return {
    name: 'mcp-proxy',
    command: process.execPath,
    args: [join(import.meta.dirname, '..', 'loopback-proxy.ts'), `127.0.0.1:${MCP_PORT}`, target],
    logPath: join(p.logs, 'mcp-proxy.log'),
    pidPath: join(p.pids, 'mcp-proxy.pid'),
  };
}

/** POSTs an MCP initialize with the token; true when the gateway answers 200. */
export async function mcpAnswers(token: string): Promise<boolean> {
  const r = await postInitialize(MCP_URL, { authorization: `Bearer ${token}` }, 'waggle-up').catch(
    () => undefined,
  );
  await r?.body?.cancel();
  return r?.status === 200;
}
