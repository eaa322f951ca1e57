import { NodeConditionType, type WaggleNode } from '@waggle/crds';
import type { NodeAgentClient } from '@waggle/node-agent/client';
import { classifyNodeAgentError } from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import { startPeriodic } from '../runtime/periodic.ts';

export interface OrphanVMCollectorOptions {
  listNodes: () => readonly WaggleNode[];
  /** The node's client; the node name is what its TLS identity must say. */
  agentFor: (endpoint: string, nodeName: string) => NodeAgentClient;
  /** The environments in the informer cache, UID → the node in their status (if placed): a cheap first filter. */
  cachedPlacements: () => ReadonlyMap<string, string | undefined>;
  /**
   * The same for every WaggleEnvironment in the cluster, read from the apiserver. Asked only when
   * the cache suggests an orphan, so a lagging or namespace-scoped cache never destroys a live VM.
   */
  livePlacements: () => Promise<ReadonlyMap<string, string | undefined>>;
  /** A VM younger than this is never collected. */
  graceMs: number;
  log: Logger;
  /** `why`: the environment is gone, or it was placed on another node. */
  onCollected?: (node: WaggleNode, vmId: string, why: string) => void;
  now?: () => number;
}

/** Kubernetes UIDs are RFC 4122 UUIDs; the operator names every VM it creates after one. */
const KUBERNETES_UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Why a VM named `vmId` on `node` is an orphan, or undefined when its environment owns it: the
 * environment is gone, or its status places it on another node (a warm bind whose Running write
 * never happened, then placed again elsewhere: docs/adr/0014, "The create path"). An environment
 * not placed yet may still bind this VM: not an orphan.
 */
function orphaned(
  placements: ReadonlyMap<string, string | undefined>,
  vmId: string,
  node: string,
): string | undefined {
  if (!placements.has(vmId)) return 'no WaggleEnvironment has this UID any more';
  const placed = placements.get(vmId);
  return placed && placed !== node ? `its WaggleEnvironment runs on node ${placed}` : undefined;
}

/**
 * Destroys VMs whose WaggleEnvironment no longer exists — left behind when the finalizer gave up
 * on an unreachable node (`VMNotDestroyed`) and the node came back — or is placed on another
 * node. Only VMs the operator could have created (id = a Kubernetes UID) on Ready nodes are
 * considered, and only after a grace period; every candidate is confirmed against the apiserver
 * before it is destroyed.
 */
export class OrphanVMCollector {
  readonly #o: OrphanVMCollectorOptions;
  #stop: (() => void) | undefined;

  constructor(opts: OrphanVMCollectorOptions) {
    this.#o = opts;
  }

  /** One pass over every Ready node; returns the VM ids it destroyed. */
  async collect(): Promise<string[]> {
    const now = (this.#o.now ?? Date.now)();
    const cached = this.#o.cachedPlacements();
    const candidates: Array<{ node: WaggleNode; vmId: string }> = [];
    for (const node of this.#o.listNodes()) {
      const ready = node.status?.conditions?.find((c) => c.type === NodeConditionType.Ready);
      const endpoint = node.status?.endpoint;
      if (ready?.status !== 'True' || !endpoint) continue;
      const name = node.metadata.name as string;
      try {
        const { vms } = await this.#o.agentFor(endpoint, name).listVMs({}, { timeoutMs: 10_000 });
        for (const vm of vms) {
          const vmId = vm.spec?.vmId ?? '';
          if (!KUBERNETES_UID.test(vmId) || !orphaned(cached, vmId, name)) continue;
          const created = Date.parse(vm.createdAt);
          if (Number.isFinite(created) && now - created < this.#o.graceMs) continue;
          candidates.push({ node, vmId });
        }
      } catch (err) {
        const f = classifyNodeAgentError(err);
        this.#o.log.debug({ node: name, kind: f.kind, err: f.message }, 'could not list VMs');
      }
    }
    if (candidates.length === 0) return [];

    const live = await this.#o.livePlacements();
    const collected: string[] = [];
    for (const { node, vmId } of candidates) {
      const name = node.metadata.name as string;
      const why = orphaned(live, vmId, name);
      if (!why) continue;
      try {
        const { existed } = await this.#o
          .agentFor(node.status?.endpoint as string, name)
          .destroyVM({ vmId }, { timeoutMs: 30_000 });
        if (!existed) continue; // its finalizer got there first
        collected.push(vmId);
        this.#o.log.warn({ node: name, vmId, why }, 'destroyed orphaned VM');
        this.#o.onCollected?.(node, vmId, why);
      } catch (err) {
        const f = classifyNodeAgentError(err);
        this.#o.log.warn({ node: name, vmId, kind: f.kind, err: f.message }, 'could not destroy orphaned VM');
      }
    }
    return collected;
  }

  start(intervalMs: number): void {
    this.#stop = startPeriodic(
      () => this.collect(),
      intervalMs,
      (err) => this.#o.log.warn({ err: err.message }, 'orphaned VM collection failed'),
      { immediately: false },
    );
  }

  stop(): void {
    this.#stop?.();
    this.#stop = undefined;
  }
}
