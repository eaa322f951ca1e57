// `pnpm waggle status`: what runs (cluster components, Waggle's pods, nodes, environments) and
// whether the MCP endpoint answers; 0 only when all of it is healthy.
import { join } from 'node:path';
import { daemonPid } from '../cluster/daemons.ts';
import { sh } from '../cluster/host.ts';
import { clusterStatus } from '../cluster/local-cluster.ts';
import { kubeBinDir } from '../kube-binaries.ts';
import { RELEASE_NAMESPACE } from '../stack.ts';
import { type CliIO, expectNoArguments } from './dispatch.ts';
import { MCP_URL, mcpForwarder } from './mcp-forward.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  const st = await clusterStatus();
  if (st.components.length === 0) {
    io.out('Waggle is not running. Start it with: pnpm waggle up');
    return 1;
  }
  let healthy = true;
  io.out('local cluster:');
  for (const c of st.components) {
    io.out(
      `  ${c.running ? '●' : '○'} ${c.name}${c.running ? '' : ' — not running (pnpm waggle up restarts it)'}`,
    );
    healthy &&= c.running;
  }
  if (!healthy) return 1;
  const k = async (kubectlArgs: string[]) =>
    sh(join(await kubeBinDir(), 'kubectl'), ['--kubeconfig', st.kubeconfigPath, ...kubectlArgs], true);
  const pods = (await k(['get', 'pods', '-n', RELEASE_NAMESPACE, '--no-headers'])).trim();
  io.out(`waggle (namespace ${RELEASE_NAMESPACE}):`);
  if (!pods) {
    io.out('  not installed — pnpm waggle up installs it');
    return 1;
  }
  for (const line of pods.split('\n')) {
    const [name, ready, state] = line.split(/\s+/);
    const ok = state === 'Running' && ready?.split('/')[0] === ready?.split('/')[1];
    healthy &&= ok;
    io.out(`  ${ok ? '●' : '○'} ${name} ${ready} ${state}`);
  }
  io.out('nodes that run microVMs:');
  io.out(
    (await k(['get', 'wagglenodes'])).replace(/^/gm, '  ').trimEnd() || '  none — is the node-agent running?',
  );
  const envs = (await k(['get', 'wenv', '-A', '--no-headers'])).trim();
  io.out(`environments: ${envs ? envs.split('\n').length : 0}`);
  const proxy = await daemonPid(mcpForwarder('-'));
  const reachable = await fetch(MCP_URL.replace(/\/mcp$/, '/healthz')).then(
    (r) => r.ok,
    () => false,
  );
  io.out(
    `MCP endpoint: ${MCP_URL} ${reachable ? '● reachable' : `○ not reachable${proxy ? '' : ' (the loopback forwarder is not running; pnpm waggle up starts it)'}`}`,
  );
  return healthy && reachable ? 0 : 1;
}
