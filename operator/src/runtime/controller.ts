import type { Logger } from 'pino';
import { type RuntimeMetrics, runtimeMetrics } from './metrics.ts';
import { WorkQueue, type WorkQueueOptions } from './work-queue.ts';

/** What a reconcile asks for next: nothing, or to run again after a delay (timers). */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

/** An error that retrying cannot fix: logged and surfaced, not retried. */
export class TerminalError extends Error {
  override name = 'TerminalError';
}

export type Reconciler = (key: string, signal: AbortSignal) => Promise<ReconcileResult | undefined>;

export interface ControllerOptions extends Omit<WorkQueueOptions, 'metrics'> {
  /** The `controller` label of its reconcile metrics and the `name` of its queue's. */
  name: string;
  reconcile: Reconciler;
  workers?: number;
  log: Logger;
  /** The log field naming the key of a reconcile (default `key`; environments: `envId`). */
  logKey?: string;
  /** Where reconciles and the queue report (default: the process-wide sink, `setRuntimeMetrics`). */
  metrics?: RuntimeMetrics;
}

/**
 * Runs a reconciler over a work queue with N workers (level-based: the reconciler reads
 * current state for the key, it is never told what changed). Errors back off per key; a
 * `TerminalError` stops retries; `requeueAfterMs` schedules the key again.
 */
export class Controller {
  readonly queue: WorkQueue;
  readonly #o: ControllerOptions;
  readonly #metrics: RuntimeMetrics;
  readonly #abort = new AbortController();
  #workers: Promise<void>[] = [];

  constructor(opts: ControllerOptions) {
    this.#o = opts;
    this.#metrics = opts.metrics ?? runtimeMetrics();
    this.queue = new WorkQueue({ ...opts, metrics: this.#metrics.queue(opts.name) });
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  start(): void {
    const n = this.#o.workers ?? 2;
    this.#workers = Array.from({ length: n }, () => this.#work());
  }

  async #work(): Promise<void> {
    while (true) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const log = this.#o.log.child({ controller: this.#o.name, [this.#o.logKey ?? 'key']: key });
      const t0 = performance.now();
      const seconds = () => (performance.now() - t0) / 1000;
      const name = this.#o.name;
      try {
        const result = await this.#o.reconcile(key, this.#abort.signal);
        this.queue.forget(key);
        const after = result?.requeueAfterMs;
        const outcome = after === undefined ? 'success' : after > 0 ? 'requeue_after' : 'requeue';
        this.#metrics.reconciled(name, outcome, seconds());
        if (after !== undefined) this.queue.addAfter(key, after);
      } catch (err) {
        if (err instanceof TerminalError) {
          this.queue.forget(key);
          this.#metrics.reconciled(name, 'error', seconds(), true);
          log.error({ err: err.message }, 'reconcile failed permanently');
        } else {
          const delayMs = this.queue.addRateLimited(key);
          this.#metrics.reconciled(name, 'error', seconds());
          const e = describeError(err);
          // A write from a stale view (409) is the normal optimistic-concurrency retry, not news.
          if (e.code === 409)
            log.debug({ err: e.message, retryInMs: delayMs }, 'reconcile conflicted; retrying');
          else log.warn({ err: e.message, retryInMs: delayMs }, 'reconcile failed; retrying');
        }
      } finally {
        this.queue.done(key);
      }
    }
  }

  /** Stops taking keys and waits for in-flight reconciles (which see an aborted signal). */
  async stop(): Promise<void> {
    this.queue.shutdown();
    this.#abort.abort();
    await Promise.all(this.#workers);
  }
}

/**
 * A short description of an error for logs: the apiserver's own message and code for a
 * client-node ApiException (instead of its whole body and response headers).
 */
export function describeError(err: unknown): { code?: number; message: string } {
  const e = err as { code?: unknown; body?: unknown; message?: string };
  if (typeof e?.code === 'number' && e.body !== undefined) {
    try {
      const body = (typeof e.body === 'string' ? JSON.parse(e.body) : e.body) as { message?: string };
      if (body?.message) return { code: e.code, message: `HTTP ${e.code}: ${body.message}` };
    } catch {
      // not JSON: fall through
    }
    return { code: e.code, message: `HTTP ${e.code}: ${String(e.message ?? '').split('\n')[0]}` };
  }
  return { message: (err as Error)?.message ?? String(err) };
}
