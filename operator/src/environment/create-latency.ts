import type { VmOrigin, WaggleEnvironment } from '@waggle/crds';
import type { InformerEvent } from '@waggle/crds/informer';

/**
 * Times creates as the leader sees them: from the first event of an environment without
 * `status.startedAt` to the event that carries it, reported by `status.createdFrom` (cold,
 * restored, warm). Measured on this process's monotonic clock because the status timestamps
 * have whole seconds only (a warm create takes tens of milliseconds). An environment first seen
 * already started (an operator restart, a new leader) is not timed; one first seen after it was
 * created (a leader change during its create) is timed from then.
 */
export class CreateLatency {
  readonly #pending = new Map<string, number>();
  readonly #observe: (path: VmOrigin, seconds: number) => void;
  readonly #now: () => number;

  constructor(observe: (path: VmOrigin, seconds: number) => void, now = () => performance.now()) {
    this.#observe = observe;
    this.#now = now;
  }

  changed(type: InformerEvent, env: WaggleEnvironment): void {
    const uid = env.metadata.uid;
    if (!uid) return;
    if (type === 'delete' || env.metadata.deletionTimestamp) {
      this.#pending.delete(uid);
      return;
    }
    if (!env.status?.startedAt) {
      if (!this.#pending.has(uid)) this.#pending.set(uid, this.#now());
      return;
    }
    const since = this.#pending.get(uid);
    if (since === undefined) return;
    this.#pending.delete(uid);
    const path = env.status.createdFrom;
    if (path) this.#observe(path, (this.#now() - since) / 1000); // unknown: an agent too old to say
  }

  /** Environments being timed (for tests). */
  get pending(): number {
    return this.#pending.size;
  }
}
