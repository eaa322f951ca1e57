/** One tool call registered with the drain. */
export interface DrainEntry {
  /** Aborts when the caller cancels or when the drain gives up waiting for the call. */
  signal: AbortSignal;
  /** True when the drain (not the caller) aborted the call. */
  interrupted(): boolean;
  leave(): void;
}

/**
 * The tool calls running in this gateway, so that a shutdown (a rollout, a deleted pod) ends
 * each of them with an answer instead of a dropped connection: an MCP client whose response
 * stream just closes waits for that response until its own timeout, minutes later.
 *
 * `drain()` refuses new calls, lets running ones finish for a grace period, then aborts the
 * rest — their handlers then answer `isError` ("interrupted, run it again") — and waits briefly
 * for those answers to be written.
 */
export class CallDrain {
  readonly #calls = new Set<{ controller: AbortController; interrupted: boolean }>();
  #draining = false;
  #changed: (() => void) | undefined;

  get draining(): boolean {
    return this.#draining;
  }

  get running(): number {
    return this.#calls.size;
  }

  /** Registers a call; undefined once draining (the call must be refused). */
  enter(callerSignal: AbortSignal): DrainEntry | undefined {
    if (this.#draining) return undefined;
    const call = { controller: new AbortController(), interrupted: false };
    this.#calls.add(call);
    return {
      signal: AbortSignal.any([callerSignal, call.controller.signal]),
      interrupted: () => call.interrupted,
      leave: () => {
        this.#calls.delete(call);
        this.#changed?.();
      },
    };
  }

  /**
   * Stops new calls, waits up to `graceMs` for running ones, aborts those left and waits up to
   * `abortWaitMs` for them to answer. Returns how many finished on their own and how many were
   * interrupted.
   */
  async drain(graceMs: number, abortWaitMs: number): Promise<{ finished: number; interrupted: number }> {
    this.#draining = true;
    const before = this.#calls.size;
    await this.#emptyWithin(graceMs);
    const left = [...this.#calls];
    for (const call of left) {
      call.interrupted = true;
      call.controller.abort(new Error('the gateway is shutting down'));
    }
    await this.#emptyWithin(abortWaitMs);
    return { finished: before - left.length, interrupted: left.length };
  }

  async #emptyWithin(ms: number): Promise<void> {
    if (this.#calls.size === 0 || ms <= 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#changed = () => {
        if (this.#calls.size === 0) done();
      };
    });
    this.#changed = undefined;
  }
}
