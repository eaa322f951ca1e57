// `pnpm waggle up`: the local cluster, the images, the Helm chart, a demo agent identity and the
// loopback MCP forward; prints the MCP URL, where the token is (a 0600 file under the cluster's
// state dir, removed by `down`) and client configurations that read it from $WAGGLE_TOKEN.
import { join } from 'node:path';
import { createTokenCommand, grantAgent } from '../agent-identity.ts';
import { daemonPid, ensureDaemon } from '../cluster/daemons.ts';
import { clusterPaths } from '../cluster/layout.ts';
import { kubeBinDir } from '../kube-binaries.ts';
import { isPortFree } from '../ports.ts';
import { installWaggle, type LocalStack, prepareLocalStack, RELEASE, RELEASE_NAMESPACE } from '../stack.ts';
import { type CliIO, expectNoArguments } from './dispatch.ts';
import { MCP_PORT, MCP_URL, mcpAnswers, mcpForwarder } from './mcp-forward.ts';
import { formatUpOutput, writeTokenFile } from './up-output.ts';

const DEMO_NAMESPACE = 'waggle-demo';
const DEMO_SA = 'agent';
const STEPS = 5;

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  const t0 = Date.now();
  let n = 0;
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    n++;
    io.err(`[${n}/${STEPS}] ${name}…`);
    const t = Date.now();
    const r = await fn();
    io.err(`[${n}/${STEPS}] ${name} ✓ ${((Date.now() - t) / 1000).toFixed(1)} s`);
    return r;
  };
  const stack: LocalStack = await step('local cluster and images', () =>
    prepareLocalStack({ log: (l) => io.err(`      ${l}`) }),
  );
  await step('helm upgrade --install waggle charts/waggle', () => installWaggle(stack));
  const token = await step(`demo ServiceAccount ${DEMO_NAMESPACE}/${DEMO_SA}`, () =>
    grantAgent(stack.cluster.k, { namespace: DEMO_NAMESPACE, serviceAccount: DEMO_SA, duration: '24h' }),
  );
  await step(`gateway on ${MCP_URL}`, async () => {
    const ip = (
      await stack.cluster.k([
        'get',
        'svc',
        '-n',
        RELEASE_NAMESPACE,
        `${RELEASE}-mcp`,
        '-o',
        'jsonpath={.spec.clusterIP}',
      ])
    ).trim();
    const spec = mcpForwarder(`${ip}:8080`);
    if (!(await daemonPid(spec)) && !(await isPortFree(MCP_PORT))) {
      throw new Error(
        `port ${MCP_PORT} on 127.0.0.1 is taken by another program; free it or set WAGGLE_UP_PORT`,
      );
    }
    await ensureDaemon(spec);
  });
  await step('MCP endpoint answers', async () => {
    const deadline = Date.now() + 60_000;
    while (!(await mcpAnswers(token))) {
      if (Date.now() > deadline)
        throw new Error(`${MCP_URL} did not answer within 60 s; see pnpm waggle status`);
      await new Promise((r) => setTimeout(r, 500));
    }
  });
  const kubectl = join(await kubeBinDir(), 'kubectl');
  const kube = `KUBECONFIG=${stack.cluster.kubeconfigPath} ${kubectl}`;
  const tokenFile = join(clusterPaths().base, 'agent-token');
  await writeTokenFile(tokenFile, token);
  io.out(
    formatUpOutput({
      seconds: (Date.now() - t0) / 1000,
      mcpUrl: MCP_URL,
      tokenFile,
      serviceAccount: { namespace: DEMO_NAMESPACE, name: DEMO_SA },
      tokenValidity: '24 h',
      newTokenCommand: `${kube} ${createTokenCommand(DEMO_SA, DEMO_NAMESPACE, '24h').join(' ')}`,
      watchCommand: `${kube} get wenv -A`,
    }),
  );
  return 0;
}
