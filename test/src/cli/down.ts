// `pnpm waggle down`: the MCP forward and the local cluster stopped, everything they made removed
// (running VMs included).
import { stopDaemon } from '../cluster/daemons.ts';
import { clusterDown } from '../cluster/local-cluster.ts';
import { type CliIO, expectNoArguments } from './dispatch.ts';
import { mcpForwarder } from './mcp-forward.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  await stopDaemon(mcpForwarder('-'));
  await clusterDown({ log: io.err });
  io.err('Waggle is down; nothing of the local cluster is left on this machine.');
  return 0;
}
