import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, NODE_PLURAL, NodeConditionType, NodeReason, VERSION, type WaggleNode } from '@waggle/crds';
import type { Logger } from 'pino';
import { setCondition } from '../environment/conditions.ts';

export interface NodeLifecycleOptions {
  listNodes: () => readonly WaggleNode[];
  /** How long the node's heartbeat has not changed, by this observer's clock (HeartbeatTracker). */
  silentForMs: (node: string) => number;
  staleAfterMs: number;
  log: Logger;
  onNodeLost: (name: string) => void;
}

/**
 * Marks WaggleNodes whose node-agent stopped heartbeating as not Ready (reason HeartbeatStale),
 * like the node lifecycle controller does for kubelets; silence is judged by this observer's
 * clock (HeartbeatTracker). A recovering agent sets Ready again. Nothing here touches a VM: the
 * reconciler keeps environments on an unreachable node for the node-lost grace.
 */
export class NodeLifecycle {
  readonly #api: CustomObjectsApi;
  readonly #o: NodeLifecycleOptions;
  #timer: NodeJS.Timeout | undefined;

  constructor(kc: KubeConfig, opts: NodeLifecycleOptions) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
    this.#o = opts;
  }

  async check(now = new Date()): Promise<void> {
    for (const node of this.#o.listNodes()) {
      const ready = node.status?.conditions?.find((c) => c.type === NodeConditionType.Ready);
      const name = node.metadata.name as string;
      const silentMs = this.#o.silentForMs(name);
      if (silentMs <= this.#o.staleAfterMs || ready?.status === 'False') continue;
      const message = node.status?.lastHeartbeatTime
        ? `no new heartbeat from the node-agent for ${Math.round(silentMs / 1000)} s`
        : 'the node-agent never reported';
      try {
        await this.#api.replaceClusterCustomObjectStatus({
          group: GROUP,
          version: VERSION,
          plural: NODE_PLURAL,
          name,
          body: {
            ...node,
            status: {
              ...node.status,
              conditions: setCondition(
                node.status?.conditions,
                {
                  type: NodeConditionType.Ready,
                  status: 'False',
                  reason: NodeReason.HeartbeatStale,
                  message,
                },
                now,
              ),
            },
          },
        });
        this.#o.log.warn({ node: name, message }, 'node lost');
      } catch (err) {
        this.#o.log.warn({ node: name, err: (err as Error).message }, 'could not mark node not ready');
      }
      this.#o.onNodeLost(name);
    }
  }

  start(intervalMs: number): void {
    this.#timer = setInterval(() => void this.check(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}
