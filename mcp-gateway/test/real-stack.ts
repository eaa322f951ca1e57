import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { createNodeAgentClient } from '@waggle/node-agent/client';
import {
  type AgentProcess,
  applyCRDs,
  type ComponentProcess,
  call,
  connectClient,
  deleteTestNamespace,
  freePorts,
  killStrayVMs,
  kubeClients,
  startAgentProcess,
  startOperatorProcess,
  waitFor,
} from '@waggle/test';
import { pino } from 'pino';
import { loadGatewayConfig } from '../src/config.ts';
import { type RunningGateway, startGateway } from '../src/gateway.ts';

/** One caller of the gateway: an API key mapped to its own namespace, and an SDK client. */
export interface Tenant {
  name: string;
  namespace: string;
  key: string;
  client: Client;
}

/**
 * The whole stack for gateway integration tests on one machine: the real apiserver (from the
 * global setup), a real operator process, a node-agent process booting TCG microVMs (python
 * only), the gateway in-process, and an MCP SDK client per tenant.
 */
export interface RealStack {
  kc: KubeConfig;
  custom: CustomObjectsApi;
  nodeName: string;
  agent: AgentProcess;
  gateway: RunningGateway;
  /** The gateway's base URL (no path). */
  base: string;
  /** The node-agent's WAGGLE_STATE_DIR. */
  stateDir: string;
  tenants: Record<string, Tenant>;
  /** Destroys every environment through the gateway, then stops and removes everything. */
  close(): Promise<void>;
}

export async function startRealStack(opts: {
  kubeconfigPath: string;
  /** Prefix of namespaces, node name and temporary directory. */
  name: string;
  /** This test's VM network (each test agent on the machine needs its own). */
  vmNetworkCidr: string;
  tenants: string[];
  gatewayEnv?: Record<string, string>;
}): Promise<RealStack> {
  const { kc, core, custom } = kubeClients(opts.kubeconfigPath);
  const suffix = randomBytes(3).toString('hex');
  const nodeName = `${opts.name}-node-${suffix}`;
  const dir = await mkdtemp(join(tmpdir(), `waggle-${opts.name}-`));
  const tenants: Record<string, Tenant> = {};
  let agent: AgentProcess | undefined;
  let operator: ComponentProcess | undefined;
  let gateway: RunningGateway | undefined;

  const close = async () => {
    const connected = Object.values(tenants).filter((t) => t.client);
    for (const t of connected) {
      // Destroy through the operator while it and the agent still run: VMs outlive their agent.
      const list = await call(t.client, 'list_environments', {}).catch(() => undefined);
      const envs = (list?.structuredContent?.environments ?? []) as Array<{ environment_id: string }>;
      for (const e of envs)
        await call(t.client, 'destroy_environment', { environment_id: e.environment_id }).catch(
          () => undefined,
        );
    }
    if (agent) {
      const nodeAgent = createNodeAgentClient(agent.apiUrl);
      await waitFor(
        async () => (await nodeAgent.listVMs({})).vms.length,
        (n) => n === 0,
        'the VMs to be destroyed on the node',
        { timeoutMs: 60_000 },
      ).catch(() => undefined);
    }
    for (const t of connected) await t.client.close().catch(() => undefined);
    await gateway?.close();
    for (const t of Object.values(tenants)) await deleteTestNamespace(kc, t.namespace);
    await operator?.kill('SIGTERM');
    await agent?.kill('SIGTERM');
    await killStrayVMs(join(dir, 'state'));
    await custom
      .deleteClusterCustomObject({
        group: 'waggle.dev',
        version: 'v1alpha1',
        plural: 'wagglenodes',
        name: nodeName,
      })
      .catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await applyCRDs(opts.kubeconfigPath);
    const keys: string[] = [];
    for (const name of opts.tenants) {
      const namespace = `${opts.name}-${name}-${suffix}`;
      const key = `${name}-${randomBytes(16).toString('hex')}`;
      await core.createNamespace({ body: { metadata: { name: namespace } } });
      keys.push(`  - {name: ${name}, namespace: ${namespace}, key: ${key}}`);
      tenants[name] = { name, namespace, key, client: undefined as unknown as Client };
    }
    const [apiPort, agentOps, operatorOps] = (await freePorts(3)) as [number, number, number];
    agent = await startAgentProcess({
      apiPort,
      opsPort: agentOps,
      env: {
        KUBECONFIG: opts.kubeconfigPath,
        WAGGLE_NODE_NAME: nodeName,
        WAGGLE_STATE_DIR: join(dir, 'state'),
        WAGGLE_GUEST_RUNTIMES: 'python',
        WAGGLE_HEARTBEAT_INTERVAL: '2s',
        WAGGLE_VM_NETWORK_CIDR: opts.vmNetworkCidr,
      },
    });
    operator = await startOperatorProcess({ kubeconfigPath: opts.kubeconfigPath, opsPort: operatorOps });
    await writeFile(join(dir, 'keys.yaml'), `keys:\n${keys.join('\n')}\n`);
    gateway = await startGateway({
      config: loadGatewayConfig({
        WAGGLE_LISTEN_ADDR: '127.0.0.1:0',
        WAGGLE_METRICS_LISTEN: '127.0.0.1:0',
        WAGGLE_API_KEYS_FILE: join(dir, 'keys.yaml'),
        ...opts.gatewayEnv,
      }),
      kc,
      log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    });
    for (const t of Object.values(tenants)) t.client = await connectClient(gateway.url, t.key, t.name);
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  return {
    kc,
    custom,
    nodeName,
    agent,
    gateway,
    base: gateway.url.replace(/\/mcp$/, ''),
    stateDir: join(dir, 'state'),
    tenants,
    close,
  };
}
