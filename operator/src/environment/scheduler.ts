export interface NodeView {
  name: string;
  ready: boolean;
  /** Milliseconds since the node-agent's last heartbeat (Infinity if never). */
  heartbeatAgeMs: number;
  unschedulable: boolean;
  runtimes: string[];
  /** The node runs OCI images (spec.image). */
  ociImages: boolean;
  capacity: { vms: number; cpus: number; memoryMiB: number };
}

export interface Allocation {
  vms: number;
  cpus: number;
  memoryMiB: number;
}

export interface ScheduleRequest {
  runtime: string;
  /** spec.image: the node must run OCI images (its runtime's built-in image is not needed). */
  image?: string;
  cpus: number;
  memoryMiB: number;
  /** spec.nodeName: only this node may be used. */
  nodeName?: string;
  /** Nodes holding a ready warm VM for the request: preferred over all others. */
  preferred?: ReadonlySet<string>;
}

export type ScheduleResult = { node: string } | { reason: string };

const EMPTY: Allocation = { vms: 0, cpus: 0, memoryMiB: 0 };

/**
 * Picks the node for an environment: Ready, heartbeat fresher than `staleAfterMs`, not
 * cordoned, offering the runtime, with a free VM slot, vCPUs and memory; among those the least
 * allocated (by VM slots, then memory), name as tie-break so the choice is deterministic. When
 * none fits, the reason counts why each node was rejected, like kube-scheduler's message.
 */
export function pickNode(
  req: ScheduleRequest,
  nodes: NodeView[],
  allocated: ReadonlyMap<string, Allocation>,
  opts: { staleAfterMs: number },
): ScheduleResult {
  const candidates = req.nodeName ? nodes.filter((n) => n.name === req.nodeName) : nodes;
  if (req.nodeName && candidates.length === 0) {
    return { reason: `spec.nodeName "${req.nodeName}" is not a registered WaggleNode` };
  }
  const rejections = new Map<string, number>();
  const reject = (why: string) => rejections.set(why, (rejections.get(why) ?? 0) + 1);
  const fits: Array<{ node: NodeView; score: [number, number] }> = [];
  for (const node of candidates) {
    const used = allocated.get(node.name) ?? EMPTY;
    if (!node.ready) reject('not ready');
    else if (node.heartbeatAgeMs > opts.staleAfterMs) reject('heartbeat is stale');
    else if (node.unschedulable) reject('cordoned');
    else if (req.image && !node.ociImages) reject('runs no OCI images (its image allow-list is empty)');
    else if (!req.image && !node.runtimes.includes(req.runtime)) reject(`no ${req.runtime} runtime`);
    else if (used.vms + 1 > node.capacity.vms) reject('no free VM slot');
    else if (used.cpus + req.cpus > node.capacity.cpus) reject('not enough free vCPUs');
    else if (used.memoryMiB + req.memoryMiB > node.capacity.memoryMiB) reject('not enough free memory');
    else {
      fits.push({
        node,
        score: [
          (used.vms + 1) / node.capacity.vms,
          (used.memoryMiB + req.memoryMiB) / node.capacity.memoryMiB,
        ],
      });
    }
  }
  if (fits.length > 0) {
    const warm = (n: NodeView) => (req.preferred?.has(n.name) ? 0 : 1);
    fits.sort(
      (a, b) =>
        warm(a.node) - warm(b.node) ||
        a.score[0] - b.score[0] ||
        a.score[1] - b.score[1] ||
        a.node.name.localeCompare(b.node.name),
    );
    return { node: (fits[0] as (typeof fits)[number]).node.name };
  }
  const total = candidates.length;
  if (total === 0)
    return { reason: '0/0 nodes are available: no WaggleNode is registered (is a node-agent running?)' };
  const parts = [...rejections.entries()].sort((a, b) => b[1] - a[1]).map(([why, n]) => `${n} ${why}`);
  return { reason: `0/${total} nodes are available: ${parts.join(', ')}` };
}
