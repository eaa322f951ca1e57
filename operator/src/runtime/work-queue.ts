/**
 * A key-only work queue in the manner of client-go's rate-limited workqueue:
 * - a key waiting in the queue is held once, however often it is added (events collapse);
 * - a key is never handed to two workers at once: added while being processed, it is queued
 *   again when the worker calls `done`;
 * - `addRateLimited` retries with per-key exponential backoff, `forget` resets it;
 * - `addAfter` schedules a key (timers for expiry); the earliest pending time wins.
 * Each step reports to `metrics` as client-go's queue does (adds, depth, queue and work duration,
 * retries).
 */
import { NO_QUEUE_METRICS, type WorkQueueMetrics } from './metrics.ts';

export interface WorkQueueOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  metrics?: WorkQueueMetrics;
}

export class WorkQueue {
  readonly #queue: string[] = [];
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #waiters: Array<(key: string | undefined) => void> = [];
  /** When each dirty key was added, and when each processed key was handed out (ms, monotonic). */
  readonly #addedAt = new Map<string, number>();
  readonly #startedAt = new Map<string, number>();
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #metrics: WorkQueueMetrics;
  #shuttingDown = false;

  constructor(opts: WorkQueueOptions = {}) {
    this.#baseDelayMs = opts.baseDelayMs ?? 5;
    this.#maxDelayMs = opts.maxDelayMs ?? 300_000;
    this.#metrics = opts.metrics ?? NO_QUEUE_METRICS;
  }

  /** Keys waiting (not counting those being processed or scheduled for later). */
  get length(): number {
    return this.#queue.length;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    this.#metrics.added();
    if (!this.#addedAt.has(key)) this.#addedAt.set(key, performance.now());
    if (this.#processing.has(key)) return; // re-queued by done()
    this.#enqueue(key);
  }

  /** A dirty key not being processed: to a waiting worker, or to the back of the queue. */
  #enqueue(key: string): void {
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter(this.#handOut(key));
      return;
    }
    this.#queue.push(key);
    this.#metrics.depth(this.#queue.length);
  }

  #handOut(key: string): string {
    this.#dirty.delete(key);
    this.#processing.add(key);
    const now = performance.now();
    const addedAt = this.#addedAt.get(key);
    this.#addedAt.delete(key);
    if (addedAt !== undefined) this.#metrics.queued((now - addedAt) / 1000);
    this.#startedAt.set(key, now);
    return key;
  }

  /** Adds `key` after `delayMs`; an earlier pending schedule for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const pending = this.#timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.#timers.set(key, { at, timer });
  }

  /** Re-adds `key` after its next backoff delay (base × 2^failures, capped). */
  addRateLimited(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    this.#metrics.retried();
    const delay = Math.min(this.#baseDelayMs * 2 ** failures, this.#maxDelayMs);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears the key's failure count (call after a successful reconcile). */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Waits for the next key; resolves `undefined` once the queue shuts down. */
  get(): Promise<string | undefined> {
    const key = this.#queue.shift();
    if (key !== undefined) {
      this.#metrics.depth(this.#queue.length);
      return Promise.resolve(this.#handOut(key));
    }
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Marks `key` finished; if it was added meanwhile it goes back in the queue. */
  done(key: string): void {
    this.#processing.delete(key);
    const startedAt = this.#startedAt.get(key);
    this.#startedAt.delete(key);
    if (startedAt !== undefined) this.#metrics.worked((performance.now() - startedAt) / 1000);
    // Added meanwhile (counted then): back in the queue, unless shutting down.
    if (this.#dirty.has(key) && !this.#shuttingDown) this.#enqueue(key);
  }

  /** Stops handing out keys: pending `get()`s resolve `undefined`, timers are cancelled. */
  shutdown(): void {
    this.#shuttingDown = true;
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const w of this.#waiters.splice(0)) w(undefined);
  }
}
