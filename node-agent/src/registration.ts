import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import {
  API_VERSION,
  GROUP,
  NODE_KIND,
  NODE_PLURAL,
  NodeConditionType,
  NodeReason,
  VERSION,
} from '@waggle/crds';
import type { Logger } from 'pino';
import type { NodeInfo } from './agent.ts';

type NodeObject = { metadata: { name: string; resourceVersion?: string }; status?: Record<string, unknown> };

export interface RegistrarOptions {
  nodeName: string;
  endpoint: string;
  intervalMs: number;
  info: () => NodeInfo;
  log: Logger;
}

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/**
 * Keeps this node's WaggleNode up to date, like a kubelet's Node: created if missing, status
 * (endpoint, accelerator, capacity, allocation, runtimes, warm pools, Ready) and heartbeat written every
 * interval through the status subresource.
 */
export class NodeRegistrar {
  readonly #api: CustomObjectsApi;
  readonly #o: RegistrarOptions;
  #timer: NodeJS.Timeout | undefined;
  #readySince = now();

  constructor(kc: KubeConfig, opts: RegistrarOptions) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
    this.#o = opts;
  }

  async #get(): Promise<NodeObject> {
    const base = { group: GROUP, version: VERSION, plural: NODE_PLURAL };
    try {
      return (await this.#api.getClusterCustomObject({ ...base, name: this.#o.nodeName })) as NodeObject;
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      return (await this.#api.createClusterCustomObject({
        ...base,
        body: { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: this.#o.nodeName } },
      })) as NodeObject;
    }
  }

  /** Writes status once; returns the object as stored. */
  async heartbeat(): Promise<NodeObject> {
    const info = this.#o.info();
    const node = await this.#get();
    const status = {
      endpoint: this.#o.endpoint,
      accelerator: info.accelerator,
      agentVersion: info.agentVersion,
      capacity: info.capacity,
      allocated: info.allocated,
      vmUsage: `${info.allocated.vms}/${info.capacity.vms}`,
      runtimes: info.runtimes,
      ociImages: info.ociImages,
      // What the operator's pool controller reads (WagglePool status, placement of warm creates).
      pools: info.pools.map((p) => ({
        name: p.name,
        templateHash: p.templateHash,
        replicas: p.replicas,
        ready: p.ready,
        booting: p.booting,
      })),
      lastHeartbeatTime: now(),
      conditions: [
        {
          type: NodeConditionType.Ready,
          status: 'True',
          reason: NodeReason.AgentReady,
          message: `node-agent ${info.agentVersion} is running VMs with ${info.accelerator}`,
          lastTransitionTime: this.#readySince,
        },
      ],
    };
    return (await this.#api.replaceClusterCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      plural: NODE_PLURAL,
      name: this.#o.nodeName,
      body: { ...node, status },
    })) as NodeObject;
  }

  start(): void {
    const tick = () =>
      this.heartbeat().then(
        () => undefined,
        (err: Error) => this.#o.log.warn({ node: this.#o.nodeName, err: err.message }, 'heartbeat failed'),
      );
    void tick();
    this.#timer = setInterval(tick, this.#o.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /**
   * Removes this node's WaggleNode (at shutdown with no VMs left, e.g. `helm uninstall`): a node
   * without VMs has nothing to lose, and a restarting agent registers again at once.
   */
  async deregister(): Promise<void> {
    this.stop();
    try {
      await this.#api.deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_PLURAL,
        name: this.#o.nodeName,
      });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
  }
}
