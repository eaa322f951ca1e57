import type { Logger } from 'pino';
import { templateOf } from '../vm/template.ts';
import { type VMSpec, vmSpecSchema } from '../vm/vm-record.ts';
import { KeyedLock } from './keyed-lock.ts';
import {
  type DeclaredPool,
  type InFlightBoot,
  type NodeState,
  pickEvictions,
  planRefill,
  poolView,
  type Reservation,
} from './plan.ts';
import type { Resources, WarmPoolSpec } from './pool-spec.ts';
import { HOLDING_STATES, isWarm, type WarmVmHost, type WarmVmView } from './warm-host.ts';

/** One pool as this node holds it (the API's WarmPoolStatus). */
export interface WarmPoolStatus {
  name: string;
  templateHash: string;
  replicas: number;
  ready: number;
  booting: number;
  outdated: number;
  message: string;
}

export interface WarmPoolsOptions<R extends WarmVmView> {
  host: WarmVmHost<R>;
  /** The node's capacity; warm VMs count against it like any VM. */
  capacity: Resources;
  log: Logger;
  /** Warm VMs booting at once on this node (default 1): the refill rate is bounded by it. */
  maxConcurrentBoots?: number;
  /**
   * After a start, pools not declared yet are not drained for this long (default 2 min) unless
   * a SetWarmPools arrives first: the operator re-sends the set, adopted warm VMs wait for it.
   */
  adoptionGraceMs?: number;
  /** How often the pools are checked without a cause (a warm VM's QEMU may have exited). */
  pollIntervalMs?: number;
  /** Wait after a failed warm boot of a pool (doubling per failure up to the max). */
  retryMs?: { min: number; max: number };
  now?: () => number;
  /** Called after each bind with the pool and how long the bind took. */
  onBind?: (pool: string, ms: number) => void;
}

interface Failure {
  until: number;
  delayMs: number;
  message: string;
}

/**
 * The warm pools of this node (docs/adr/0014, "Warm pools"): holds the declared set, keeps
 * `replicas` ready unowned VMs per pool with a refill loop that boots at a bounded rate within
 * the node's capacity, replaces outdated VMs gradually, drains pools that went away, hands warm
 * VMs to CreateVM (bind) and evicts them when an environment needs the room.
 *
 * Nothing is kept about the VMs themselves: every decision reads the host's records (pool and
 * template hash are on them), so warm VMs adopted after a restart are known at once.
 */
export class WarmPools<R extends WarmVmView = WarmVmView> {
  readonly #o: Required<Omit<WarmPoolsOptions<R>, 'onBind'>> & Pick<WarmPoolsOptions<R>, 'onBind'>;
  #pools: DeclaredPool[] = [];
  #declared = false;
  readonly #startedAt: number;
  /** Instances being bound or destroyed: no longer warm for anyone else. */
  readonly #claimed = new Set<string>();
  readonly #inFlight = new Set<InFlightBoot>();
  readonly #boots = new Set<Promise<void>>();
  readonly #reservations = new Set<Reservation>();
  readonly #failures = new Map<string, Failure>();
  /** Declared pools whose template cannot be booted here, with the reason. */
  #unbootable = new Map<string, string>();
  #messages = new Map<string, string>();
  #pass: Promise<void> | undefined;
  readonly #sets = new KeyedLock();
  #again = false;
  #timers: NodeJS.Timeout[] = [];
  #closed = false;

  constructor(opts: WarmPoolsOptions<R>) {
    this.#o = {
      maxConcurrentBoots: 1,
      adoptionGraceMs: 120_000,
      pollIntervalMs: 2_000,
      retryMs: { min: 5_000, max: 300_000 },
      now: Date.now,
      ...opts,
    };
    this.#startedAt = this.#o.now();
  }

  /** Starts the refill loop: a pass now, every poll interval, and when the adoption grace ends. */
  start(): void {
    if (this.#timers.length > 0 || this.#closed) return;
    const poll = setInterval(() => this.wake(), this.#o.pollIntervalMs);
    const grace = setTimeout(() => this.wake(), this.#o.adoptionGraceMs + 10);
    poll.unref();
    grace.unref();
    this.#timers = [poll, grace];
    this.wake();
  }

  /** Stops the loop (agent shutdown); warm VMs keep running for the next agent to adopt. */
  close(): void {
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers = [];
  }

  /**
   * Replaces the whole declared set (parsed by parseWarmPools); returns the pools' status.
   * Concurrent calls apply in the order they came.
   */
  set(pools: WarmPoolSpec[]): Promise<WarmPoolStatus[]> {
    return this.#sets.run('set', () => this.#set(pools));
  }

  async #set(pools: WarmPoolSpec[]): Promise<WarmPoolStatus[]> {
    const unbootable = new Map<string, string>();
    const hashed = await Promise.all(
      pools.map(async (p) => {
        if (p.unavailable) {
          unbootable.set(p.name, p.unavailable);
          return { ...p, hash: '' };
        }
        try {
          return { ...p, hash: await this.#o.host.templateHash(p.template) };
        } catch (err) {
          // E.g. no image for the runtime here: the pool cannot fill on this node, the rest can.
          unbootable.set(p.name, (err as Error).message);
          return { ...p, hash: '' };
        }
      }),
    );
    this.#unbootable = unbootable;
    const before = new Map(this.#pools.map((p) => [p.name, p.hash]));
    this.#pools = hashed;
    for (const p of this.#pools) {
      // A new template starts with a clean slate; an unchanged failing one keeps its back-off.
      if (before.get(p.name) !== p.hash) this.#failures.delete(p.name);
    }
    for (const name of this.#failures.keys()) {
      if (!this.#pools.some((p) => p.name === name)) this.#failures.delete(name);
    }
    if (!this.#declared) this.#o.log.info({ pools: pools.length }, 'warm pools declared');
    this.#declared = true;
    this.wake();
    return this.status();
  }

  #state(): NodeState {
    return {
      pools: this.#pools,
      vms: this.#o.host.list(),
      claimed: this.#claimed,
      inFlight: [...this.#inFlight],
      reservations: [...this.#reservations],
      capacity: this.#o.capacity,
    };
  }

  /** Declared pools, then pools that are not declared but still hold warm VMs (replicas 0). */
  status(): WarmPoolStatus[] {
    const s = this.#state();
    const out: WarmPoolStatus[] = this.#pools.map((p) => {
      const v = poolView(p.name, p.hash, s);
      return {
        name: p.name,
        templateHash: p.hash,
        replicas: p.replicas,
        ready: v.ready.length,
        booting: v.booting,
        outdated: v.outdated.length,
        message: v.ready.length >= p.replicas ? '' : (this.#messages.get(p.name) ?? ''),
      };
    });
    const undeclared = new Map<string, { ready: number; booting: number }>();
    for (const vm of s.vms) {
      if (!isWarm(vm) || this.#pools.some((p) => p.name === vm.pool) || this.#claimed.has(vm.instanceId))
        continue;
      const n = undeclared.get(vm.pool as string) ?? { ready: 0, booting: 0 };
      if (vm.state === 'running') n.ready++;
      else if (vm.state === 'booting') n.booting++;
      undeclared.set(vm.pool as string, n);
    }
    for (const [name, n] of [...undeclared].sort(([a], [b]) => a.localeCompare(b))) {
      out.push({
        name,
        templateHash: '',
        replicas: 0,
        ready: 0,
        booting: n.booting,
        outdated: n.ready,
        message: this.#drains() ? 'not declared: draining' : 'adopted: waiting for SetWarmPools',
      });
    }
    return out;
  }

  /** Unowned VMs held for pools that hold capacity (ready or booting). */
  warmVMs(): number {
    return this.#o.host
      .list()
      .filter((vm) => isWarm(vm) && (vm.state === 'running' || vm.state === 'booting')).length;
  }

  #drains(): boolean {
    return this.#declared || this.#o.now() - this.#startedAt >= this.#o.adoptionGraceMs;
  }

  /** Asks for a refill pass (coalesced with one that runs). */
  wake(): void {
    if (this.#closed) return;
    this.#again = true;
    this.#pass ??= this.#loop();
  }

  /** Resolves when no pass runs and no boot is in flight (tests). */
  async idle(): Promise<void> {
    while (this.#pass || this.#boots.size > 0) {
      await Promise.all([this.#pass, ...this.#boots]);
    }
  }

  async #loop(): Promise<void> {
    try {
      while (this.#again && !this.#closed) {
        this.#again = false;
        await this.#refill().catch((err: Error) =>
          this.#o.log.warn({ err: err.message }, 'warm pool refill failed'),
        );
      }
    } finally {
      // In the same turn as the last check of #again: a wake() after it starts a new loop.
      this.#pass = undefined;
    }
  }

  async #refill(): Promise<void> {
    const now = this.#o.now();
    const backoff = new Map<string, string>();
    for (const [name, f] of this.#failures) if (f.until > now) backoff.set(name, f.message);
    for (const [name, why] of this.#unbootable) backoff.set(name, why);
    const plan = planRefill({
      ...this.#state(),
      drain: this.#drains(),
      bootSlots: this.#o.maxConcurrentBoots - this.#inFlight.size,
      backoff,
    });
    this.#messages = plan.messages;
    for (const d of plan.destroy) this.#claimed.add(d.instanceId);
    // Destroys go one at a time and before the boots that may need their room.
    for (const d of plan.destroy) {
      await this.#destroy(d.instanceId, d.pool, d.reason);
    }
    if (plan.destroy.length > 0) this.#again = true;
    for (const pool of plan.boot) this.#startBoot(pool);
  }

  async #destroy(instanceId: string, pool: string, reason: string): Promise<void> {
    try {
      await this.#o.host.destroyInstance(instanceId);
      this.#o.log.info({ instanceId, pool, reason }, 'warm vm destroyed');
    } catch (err) {
      this.#o.log.warn(
        { instanceId, pool, reason, err: (err as Error).message },
        'could not destroy a warm vm',
      );
    } finally {
      this.#claimed.delete(instanceId);
    }
  }

  #startBoot(pool: DeclaredPool): void {
    const boot: InFlightBoot = {
      pool: pool.name,
      hash: pool.hash,
      cpus: pool.template.cpus,
      memoryMiB: pool.template.memoryMiB,
    };
    this.#inFlight.add(boot);
    const t0 = this.#o.now();
    const done = this.#o.host
      .bootWarm(pool.template, pool.name)
      .then(
        (vm) => {
          this.#failures.delete(pool.name);
          this.#o.log.info(
            { pool: pool.name, instanceId: vm.instanceId, ms: this.#o.now() - t0 },
            'warm vm ready',
          );
        },
        (err: Error) => {
          const prev = this.#failures.get(pool.name);
          const delayMs = prev ? Math.min(prev.delayMs * 2, this.#o.retryMs.max) : this.#o.retryMs.min;
          const message = `warm boot failed (retry in ${Math.round(delayMs / 1000)} s): ${err.message.split('\n')[0]}`;
          this.#failures.set(pool.name, { until: this.#o.now() + delayMs, delayMs, message });
          this.#o.log.warn({ pool: pool.name, err: err.message, retryMs: delayMs }, 'warm boot failed');
        },
      )
      .finally(() => {
        this.#inFlight.delete(boot);
        this.#boots.delete(done);
        this.wake();
      });
    this.#boots.add(done);
  }

  /**
   * Hands a ready warm VM of `pool` whose template equals the spec's to `spec.vmId`; undefined
   * when there is none (the caller restores or boots instead). The caller serializes calls per
   * vm id; a VM claimed here is never handed out twice.
   */
  async bind(spec: VMSpec, pool: string): Promise<R | undefined> {
    const parsed = vmSpecSchema.safeParse(spec);
    if (!parsed.success) return undefined; // the normal create says what is wrong
    const vms = this.#o.host.list();
    if (vms.some((vm) => vm.vmId === spec.vmId)) return undefined; // a repeat: the normal path answers
    const hash = await this.#o.host.templateHash(templateOf(parsed.data));
    const tried = new Set<string>();
    for (;;) {
      const vm = this.#o.host
        .list()
        .filter(
          (v) =>
            isWarm(v) &&
            v.pool === pool &&
            v.state === 'running' &&
            v.templateHash === hash &&
            !this.#claimed.has(v.instanceId) &&
            !tried.has(v.instanceId),
        )
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt))[0];
      if (!vm) {
        this.#o.log.info({ vmId: spec.vmId, pool }, 'no warm vm to bind');
        return undefined;
      }
      this.#claimed.add(vm.instanceId);
      tried.add(vm.instanceId);
      const t0 = performance.now();
      try {
        const bound = await this.#o.host.bind(vm.instanceId, spec.vmId);
        const ms = performance.now() - t0;
        this.#o.onBind?.(pool, ms);
        this.#o.log.info(
          { vmId: spec.vmId, pool, instanceId: vm.instanceId, ms: Math.round(ms) },
          'warm vm bound',
        );
        return bound;
      } catch (err) {
        this.#o.log.warn(
          { vmId: spec.vmId, pool, instanceId: vm.instanceId, err: (err as Error).message },
          'could not bind a warm vm',
        );
      } finally {
        this.#claimed.delete(vm.instanceId);
        this.wake();
      }
    }
  }

  /**
   * Runs a create that is not a warm bind with its room promised: warm VMs are evicted first
   * when the node would be over capacity with them and fits without them, and no warm boot
   * takes the room while the create runs.
   */
  async withRoom<T>(spec: Pick<VMSpec, 'vmId' | 'cpus' | 'memoryMiB'>, create: () => Promise<T>): Promise<T> {
    const need = { cpus: spec.cpus, memoryMiB: spec.memoryMiB };
    const repeat = this.#o.host.list().some((vm) => vm.vmId === spec.vmId && HOLDING_STATES.has(vm.state));
    const evict = repeat ? [] : pickEvictions(this.#state(), need);
    const reservation: Reservation = { vmId: spec.vmId, ...need };
    this.#reservations.add(reservation);
    for (const vm of evict) this.#claimed.add(vm.instanceId);
    try {
      for (const vm of evict) {
        this.#o.log.info({ vmId: spec.vmId, pool: vm.pool }, 'evicting a warm vm to make room');
        await this.#destroy(vm.instanceId, vm.pool ?? '', 'evicted');
      }
      return await create();
    } finally {
      this.#reservations.delete(reservation);
      this.wake();
    }
  }
}
