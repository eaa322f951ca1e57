import type { WaggleEnvironment } from '@waggle/crds';

/**
 * The resourceVersion of the last status this operator wrote for an environment at a transition
 * whose node-agent call must not be repeated from an older view (warm bind, suspend, resume): until the
 * cache shows that write, a reconcile sees the object as it was before and would call again.
 * Resource versions are opaque, but etcd-backed apiservers issue increasing integers; anything
 * else is never judged stale.
 */
export class WrittenVersions {
  readonly #versions = new Map<string, bigint>();

  note(written: WaggleEnvironment): void {
    const rv = toInt(written.metadata.resourceVersion);
    if (rv !== undefined) this.#versions.set(written.metadata.uid as string, rv);
  }

  /** True while the cached `env` is older than the version noted for it. */
  isStale(env: WaggleEnvironment): boolean {
    const uid = env.metadata.uid as string;
    const noted = this.#versions.get(uid);
    if (noted === undefined) return false;
    const seen = toInt(env.metadata.resourceVersion);
    if (seen !== undefined && seen < noted) return true;
    this.#versions.delete(uid); // caught up
    return false;
  }

  forget(uid: string): void {
    this.#versions.delete(uid);
  }
}

const toInt = (rv: string | undefined): bigint | undefined =>
  rv && /^\d+$/.test(rv) ? BigInt(rv) : undefined;
