/**
 * Per-key retry delays kept by the reconciler itself (a status write on each failure would bring
 * the key straight back through the queue and skip the queue's own backoff): after each failure
 * the next attempt waits twice as long, from `baseMs` up to `maxMs`; a success clears the key.
 */
export class RetryBackoff {
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #keys = new Map<string, { failures: number; retryAt: number }>();

  constructor(opts: { baseMs: number; maxMs: number }) {
    this.#baseMs = opts.baseMs;
    this.#maxMs = opts.maxMs;
  }

  /** Records a failure at `now`; returns how long until the next attempt. */
  failed(key: string, now: number): number {
    const failures = (this.#keys.get(key)?.failures ?? 0) + 1;
    const delay = Math.min(this.#maxMs, this.#baseMs * 2 ** (failures - 1));
    this.#keys.set(key, { failures, retryAt: now + delay });
    return delay;
  }

  /** How long `key` must still wait before its next attempt (0: it may try now). */
  waitMs(key: string, now: number): number {
    const k = this.#keys.get(key);
    return k ? Math.max(0, k.retryAt - now) : 0;
  }

  /** Whether the last attempt for `key` failed. */
  failing(key: string): boolean {
    return this.#keys.has(key);
  }

  clear(key: string): void {
    this.#keys.delete(key);
  }
}
