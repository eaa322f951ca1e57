/** The state of one node-agent call made outside the reconcile workers. */
export type OffWorkerCall<T> =
  | { state: 'started' }
  | { state: 'pending' }
  | { state: 'done'; value: T }
  | { state: 'failed'; error: unknown };

/**
 * Node-agent calls that run outside the reconcile workers, one per key: a worker starts a call
 * and returns; the call's completion queues the key again, and the next reconcile takes the
 * result. A slow or black-holed node therefore holds none of the operator's workers — each call
 * still has its own deadline — and every other environment keeps being reconciled.
 */
export class OffWorkerCalls<T> {
  readonly #calls = new Map<string, OffWorkerCall<T>>();
  /** Settles when the call in flight for a key does (a pass that may wait for it briefly). */
  readonly #settled = new Map<string, Promise<void>>();
  /** What the last call for a key was made against (e.g. a node), until `forget`. */
  readonly #tags = new Map<string, string>();

  /**
   * The finished call for `key` (forgotten once returned), `pending` while it runs, or — when
   * there is none — starts `call` and returns `started`. `onSettled` runs when it finishes.
   */
  take(key: string, call: () => Promise<T>, onSettled: () => void, tag?: string): OffWorkerCall<T> {
    const current = this.#calls.get(key);
    if (current && current.state !== 'pending') {
      this.#calls.delete(key);
      return current;
    }
    if (current) return current;
    const pending: OffWorkerCall<T> = { state: 'pending' };
    this.#calls.set(key, pending);
    if (tag === undefined) this.#tags.delete(key);
    else this.#tags.set(key, tag);
    // `call` runs after this returns, so a synchronous throw is a failure like any other.
    const settled = Promise.resolve()
      .then(call)
      .then(
        (value) => this.#settle(key, pending, { state: 'done', value }),
        (error: unknown) => this.#settle(key, pending, { state: 'failed', error }),
      )
      .finally(() => {
        if (this.#settled.get(key) === settled) this.#settled.delete(key);
        onSettled();
      });
    this.#settled.set(key, settled);
    return { state: 'started' };
  }

  /**
   * Waits up to `ms` for the call in flight for `key`, then returns its result (forgotten once
   * returned, like `take`) or `pending` while it still runs; undefined when there is no call.
   */
  async wait(key: string, ms: number): Promise<OffWorkerCall<T> | undefined> {
    const settled = this.#settled.get(key);
    if (settled) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([settled, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    }
    const current = this.#calls.get(key);
    if (current && current.state !== 'pending') this.#calls.delete(key);
    return current;
  }

  /** True while a call for `key` runs. */
  inFlight(key: string): boolean {
    return this.#calls.get(key)?.state === 'pending';
  }

  /**
   * Puts back a finished result that `take` returned but the caller could not act on (its status
   * write failed): the next `take` returns it again instead of repeating the call. Ignored when
   * another call for `key` is registered meanwhile.
   */
  restore(key: string, result: OffWorkerCall<T> & { state: 'done' | 'failed' }): void {
    if (!this.#calls.has(key)) this.#calls.set(key, result);
  }

  /**
   * The tag of the last call started for `key` (in flight, finished or taken), until `forget`:
   * e.g. the node a CreateVM ran on, whose VM may exist even though no status says so.
   */
  tagOf(key: string): string | undefined {
    return this.#tags.get(key);
  }

  /** Drops a finished result and the tag (a pending call keeps running; its result is dropped on arrival). */
  forget(key: string): void {
    this.#calls.delete(key);
    this.#tags.delete(key);
  }

  #settle(key: string, pending: OffWorkerCall<T>, result: OffWorkerCall<T>): void {
    // Only the call that is still registered records its result (forget() may have dropped it).
    if (this.#calls.get(key) === pending) this.#calls.set(key, result);
  }
}
