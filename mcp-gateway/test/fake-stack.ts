// The gateway's integration fixture with a fake node: the real apiserver (from the global
// setup), a real operator process, a fake node-agent registered as a WaggleNode, API keys for
// the given callers, and a gateway started in this process. Tests with real VMs use
// real-stack.ts instead.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { type FakeNodeAgent, startFakeNodeAgent } from '@waggle/node-agent/testing';
import {
  applyCRDs,
  type ComponentProcess,
  deleteTestNamespace,
  freePorts,
  registerFakeNode,
  startOperatorProcess,
} from '@waggle/test';
import { pino } from 'pino';
import { loadGatewayConfig } from '../src/config.ts';
import { type RunningGateway, startGateway } from '../src/gateway.ts';

export interface FakeStack {
  agent: FakeNodeAgent;
  node: Awaited<ReturnType<typeof registerFakeNode>>;
  operator: ComponentProcess;
  /** Undefined once a test closed it itself (`gateway.close()` then `stack.gateway = undefined`). */
  gateway: RunningGateway | undefined;
  /** API key of each caller, by name. */
  keys: Record<string, string>;
  close(): Promise<void>;
}

export async function startFakeStack(opts: {
  kc: KubeConfig;
  kubeconfigPath: string;
  /** Names the node and the temporary directory. */
  name: string;
  namespaces: string[];
  callers: Array<{ name: string; namespace: string }>;
  node?: { vms?: number; runtimes?: string[]; ociImages?: boolean };
  agent?: Parameters<typeof startFakeNodeAgent>[0];
  /** Gateway configuration beyond the listen address and keys file. */
  gatewayEnv?: Record<string, string>;
}): Promise<FakeStack> {
  await applyCRDs(opts.kubeconfigPath);
  const core = opts.kc.makeApiClient(CoreV1Api);
  for (const ns of opts.namespaces) await core.createNamespace({ body: { metadata: { name: ns } } });
  const agent = await startFakeNodeAgent(opts.agent ?? { createDelayMs: 50 });
  const node = await registerFakeNode(opts.kc.makeApiClient(CustomObjectsApi), {
    name: `${opts.name}-node-${randomBytes(3).toString('hex')}`,
    endpoint: agent.url,
    vms: opts.node?.vms ?? 10,
    ...(opts.node?.runtimes ? { runtimes: opts.node.runtimes } : {}),
    ...(opts.node?.ociImages ? { ociImages: true } : {}),
  });
  const [opsPort] = (await freePorts(1)) as [number];
  const operator = await startOperatorProcess({ kubeconfigPath: opts.kubeconfigPath, opsPort });
  const dir = await mkdtemp(join(tmpdir(), `waggle-${opts.name}-`));
  const keys = Object.fromEntries(
    opts.callers.map((c) => [c.name, `${c.name}-${randomBytes(16).toString('hex')}`]),
  );
  const keysFile = join(dir, 'keys.yaml');
  await writeFile(
    keysFile,
    `keys:\n${opts.callers.map((c) => `  - {name: ${c.name}, namespace: ${c.namespace}, key: ${keys[c.name]}}`).join('\n')}\n`,
  );
  const stack: FakeStack = {
    agent,
    node,
    operator,
    keys,
    gateway: await startGateway({
      config: loadGatewayConfig({
        WAGGLE_LISTEN_ADDR: '127.0.0.1:0',
        WAGGLE_METRICS_LISTEN: '127.0.0.1:0',
        WAGGLE_API_KEYS_FILE: keysFile,
        WAGGLE_CREATE_WAIT_TIMEOUT: '30s',
        ...opts.gatewayEnv,
      }),
      kc: opts.kc,
      log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    }),
    async close() {
      await stack.gateway?.close();
      for (const ns of opts.namespaces) await deleteTestNamespace(opts.kc, ns);
      await operator.kill('SIGTERM');
      await node.remove();
      await agent.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}
