/**
 * Judges node-agent heartbeats by the observer's clock, as the kubelet's node Lease is judged:
 * what counts is when this process last saw a node's heartbeat change, not the time the agent
 * wrote into it (the agent's clock may be skewed, and a time written long ago may arrive late).
 *
 * Time during which no update could arrive — the watch on WaggleNodes was down, e.g. an
 * apiserver outage, or this process only just started — never counts as silence: the window
 * starts again when the watch comes back. So a control-plane outage never looks like every node
 * dying at once.
 */
export class HeartbeatTracker {
  readonly #seen = new Map<string, { beat: string | undefined; at: number }>();
  readonly #now: () => number;
  readonly #watchHealthySince: () => number | undefined;

  /**
   * @param watchHealthySince when the WaggleNode watch last recovered (undefined while it is down)
   * @param now a monotonic clock in ms (default `performance.now()`)
   */
  constructor(watchHealthySince: () => number | undefined, now: () => number = () => performance.now()) {
    this.#watchHealthySince = watchHealthySince;
    this.#now = now;
  }

  /** Records the node's heartbeat value as seen now (from an informer event). */
  observe(node: string, heartbeat: string | undefined): void {
    const prev = this.#seen.get(node);
    if (prev && prev.beat === heartbeat) return;
    this.#seen.set(node, { beat: heartbeat, at: this.#now() });
  }

  forget(node: string): void {
    this.#seen.delete(node);
  }

  /**
   * How long the node has been silent as far as this observer can tell: 0 while the watch is
   * down (nothing can be judged), Infinity for a node never observed.
   */
  silentForMs(node: string): number {
    const seen = this.#seen.get(node);
    if (!seen) return Number.POSITIVE_INFINITY;
    const healthy = this.#watchHealthySince();
    if (healthy === undefined) return 0;
    // A node whose agent never wrote a heartbeat is silent from when it was first seen.
    return Math.max(0, this.#now() - Math.max(seen.at, healthy));
  }
}
