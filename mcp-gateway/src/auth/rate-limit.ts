/**
 * A token bucket: holds at most `burst` tokens, refilled at `perSecond`. `take()` spends one when
 * there is one; `retryAfterMs()` says when the next one will be there.
 */
export class TokenBucket {
  #tokens: number;
  #at: number;
  readonly burst: number;
  readonly perSecond: number;

  constructor(burst: number, perSecond: number, now = Date.now()) {
    this.burst = burst;
    this.perSecond = perSecond;
    this.#tokens = burst;
    this.#at = now;
  }

  #refill(now: number): void {
    if (now > this.#at) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.perSecond);
      this.#at = now;
    }
  }

  /** Whether a token is there (without spending it). */
  has(now = Date.now()): boolean {
    this.#refill(now);
    return this.#tokens >= 1;
  }

  /** Spends a token; false when there is none. */
  take(now = Date.now()): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Spends a token even when there is none (the bucket goes into debt), e.g. for a failure that happened. */
  charge(now = Date.now()): void {
    this.#refill(now);
    this.#tokens = Math.max(-this.burst, this.#tokens - 1);
  }

  /** Gives back a token spent for something that turned out not to count. */
  refund(now = Date.now()): void {
    this.#refill(now);
    this.#tokens = Math.min(this.burst, this.#tokens + 1);
  }

  /** True when the bucket is full again (nothing to remember). */
  full(now = Date.now()): boolean {
    this.#refill(now);
    return this.#tokens >= this.burst;
  }

  retryAfterMs(now = Date.now()): number {
    this.#refill(now);
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) / this.perSecond) * 1000);
  }
}

/**
 * One token bucket per key (e.g. a client address), at most `maxKeys` of them: the oldest key is
 * forgotten first (a forgotten key starts with a full bucket), and full buckets are dropped.
 */
export class KeyedBuckets {
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #burst: number;
  readonly #perSecond: number;
  readonly #maxKeys: number;

  constructor(opts: { burst: number; perSecond: number; maxKeys?: number }) {
    this.#burst = opts.burst;
    this.#perSecond = opts.perSecond;
    this.#maxKeys = opts.maxKeys ?? 10_000;
  }

  get size(): number {
    return this.#buckets.size;
  }

  has(key: string, now = Date.now()): boolean {
    return this.#buckets.get(key)?.has(now) ?? true;
  }

  retryAfterMs(key: string, now = Date.now()): number {
    return this.#buckets.get(key)?.retryAfterMs(now) ?? 0;
  }

  #bucket(key: string, now: number): TokenBucket {
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.#maxKeys) this.#evict(now);
      b = new TokenBucket(this.#burst, this.#perSecond, now);
      this.#buckets.set(key, b);
    }
    return b;
  }

  /** Spends one of the key's tokens; false when it has none. */
  take(key: string, now = Date.now()): boolean {
    return this.#bucket(key, now).take(now);
  }

  refund(key: string, now = Date.now()): void {
    this.#buckets.get(key)?.refund(now);
  }

  charge(key: string, now = Date.now()): void {
    this.#bucket(key, now).charge(now);
  }

  #evict(now: number): void {
    for (const [k, b] of this.#buckets) if (b.full(now)) this.#buckets.delete(k);
    while (this.#buckets.size >= this.#maxKeys) {
      const oldest = this.#buckets.keys().next().value as string;
      this.#buckets.delete(oldest);
    }
  }
}

/**
 * How many things each key has going at once (sessions, tool calls), up to `max` per key.
 * `tryAcquire` returns the release function (idempotent), or undefined at the limit.
 */
export class ConcurrencyLimiter {
  readonly #active = new Map<string, number>();
  readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  active(key: string): number {
    return this.#active.get(key) ?? 0;
  }

  tryAcquire(key: string): (() => void) | undefined {
    const n = this.active(key);
    if (n >= this.max) return undefined;
    this.#active.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.active(key) - 1;
      if (left > 0) this.#active.set(key, left);
      else this.#active.delete(key);
    };
  }
}
