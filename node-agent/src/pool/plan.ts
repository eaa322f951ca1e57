import type { Resources, WarmPoolSpec } from './pool-spec.ts';
import { HOLDING_STATES, isWarm, type WarmVmView } from './warm-host.ts';

/** A declared pool with the hash of its current template. */
export interface DeclaredPool extends WarmPoolSpec {
  hash: string;
}

/** A warm boot started and not finished (its record may not be listed yet). */
export interface InFlightBoot {
  pool: string;
  hash: string;
  cpus: number;
  memoryMiB: number;
}

/** Room promised to a CreateVM that is not a warm bind (its record may not be listed yet). */
export interface Reservation {
  vmId: string;
  cpus: number;
  memoryMiB: number;
}

/** What the node holds and has promised: the input of every capacity decision. */
export interface NodeState {
  pools: readonly DeclaredPool[];
  vms: readonly WarmVmView[];
  /** Instances being bound or destroyed: no longer warm, not to be touched twice. */
  claimed: ReadonlySet<string>;
  inFlight: readonly InFlightBoot[];
  reservations: readonly Reservation[];
  capacity: Resources;
}

export type DestroyReason = 'exited' | 'drained' | 'surplus' | 'outdated' | 'evicted';

export interface Plan {
  destroy: Array<{ instanceId: string; pool: string; reason: DestroyReason }>;
  boot: DeclaredPool[];
  /** Why a pool cannot fill now (node full, boot failures), by pool name. */
  messages: Map<string, string>;
}

const ZERO: Resources = { vms: 0, cpus: 0, memoryMiB: 0 };
const add = (a: Resources, b: { cpus: number; memoryMiB: number }, sign = 1): Resources => ({
  vms: a.vms + sign,
  cpus: a.cpus + sign * b.cpus,
  memoryMiB: a.memoryMiB + sign * b.memoryMiB,
});

export function fits(
  used: Resources,
  need: { cpus: number; memoryMiB: number },
  capacity: Resources,
): boolean {
  const after = add(used, need);
  return after.vms <= capacity.vms && after.cpus <= capacity.cpus && after.memoryMiB <= capacity.memoryMiB;
}

const byAge = (a: WarmVmView, b: WarmVmView) =>
  a.createdAt.localeCompare(b.createdAt) || a.instanceId.localeCompare(b.instanceId);

const bootingKey = (pool: string, hash: string) => `${pool}\n${hash}`;

/** Listed warm VMs still booting, by pool and template. */
function listedBooting(vms: readonly WarmVmView[]): Map<string, number> {
  const n = new Map<string, number>();
  for (const vm of vms) {
    if (!isWarm(vm) || vm.state !== 'booting') continue;
    const key = bootingKey(vm.pool ?? '', vm.templateHash ?? '');
    n.set(key, (n.get(key) ?? 0) + 1);
  }
  return n;
}

/** In-flight boots whose record is not listed yet (at most one listed booting VM per boot). */
function hiddenBoots(s: Pick<NodeState, 'vms' | 'inFlight'>): InFlightBoot[] {
  const listed = listedBooting(s.vms);
  const hidden: InFlightBoot[] = [];
  for (const boot of s.inFlight) {
    const key = bootingKey(boot.pool, boot.hash);
    const seen = listed.get(key) ?? 0;
    if (seen > 0) listed.set(key, seen - 1);
    else hidden.push(boot);
  }
  return hidden;
}

/** What the node's VMs hold, plus boots and creates in flight that are not listed yet. */
export function usage(s: Omit<NodeState, 'pools' | 'claimed' | 'capacity'>): Resources {
  let used = ZERO;
  const listedIds = new Set<string>();
  for (const vm of s.vms) {
    if (vm.vmId) listedIds.add(vm.vmId);
    if (HOLDING_STATES.has(vm.state)) used = add(used, vm);
  }
  for (const boot of hiddenBoots(s)) used = add(used, boot);
  for (const r of s.reservations) if (!listedIds.has(r.vmId)) used = add(used, r);
  return used;
}

/** One pool's unowned VMs as the pool logic counts them (claimed ones excluded). */
export interface PoolView {
  /** Ready VMs of the current template, oldest first. */
  ready: WarmVmView[];
  /** VMs of the current template still booting (listed or in flight). */
  booting: number;
  /** Ready VMs of an older template, oldest first (bindable until replaced). */
  outdated: WarmVmView[];
  /** VMs of an older template still booting. */
  outdatedBooting: number;
}

export function poolView(
  pool: string,
  hash: string,
  s: Pick<NodeState, 'vms' | 'claimed' | 'inFlight'>,
): PoolView {
  const view: PoolView = { ready: [], booting: 0, outdated: [], outdatedBooting: 0 };
  for (const vm of s.vms) {
    if (!isWarm(vm) || vm.pool !== pool || s.claimed.has(vm.instanceId)) continue;
    const current = vm.templateHash === hash;
    if (vm.state === 'running') (current ? view.ready : view.outdated).push(vm);
    else if (vm.state === 'booting') {
      if (current) view.booting++;
      else view.outdatedBooting++;
    }
  }
  for (const boot of hiddenBoots(s)) {
    if (boot.pool !== pool) continue;
    if (boot.hash === hash) view.booting++;
    else view.outdatedBooting++;
  }
  view.ready.sort(byAge);
  view.outdated.sort(byAge);
  return view;
}

const describeFull = (used: Resources, need: Resources, capacity: Resources): string => {
  const short: string[] = [];
  if (used.vms + need.vms > capacity.vms) short.push(`${used.vms}/${capacity.vms} VMs`);
  if (used.cpus + need.cpus > capacity.cpus) short.push(`${used.cpus}/${capacity.cpus} CPUs`);
  if (used.memoryMiB + need.memoryMiB > capacity.memoryMiB)
    short.push(`${used.memoryMiB}/${capacity.memoryMiB} MiB`);
  return `node full (${short.join(', ')} in use); the pool holds what fits`;
};

/**
 * One refill pass, decided at once: destroy dead warm VMs, drain pools that are not declared
 * (once the set is known), trim surplus, replace outdated VMs one for one as new ones become
 * ready, and start up to `bootSlots` boots for the pools furthest below their replicas while
 * the node has room.
 */
export function planRefill(
  s: NodeState & {
    /** The declared set is known (a SetWarmPools arrived, or the grace after a restart ended). */
    drain: boolean;
    bootSlots: number;
    /** Pools that may not boot now (a recent boot failure), with the reason. */
    backoff: ReadonlyMap<string, string>;
  },
): Plan {
  const plan: Plan = { destroy: [], boot: [], messages: new Map() };
  const declared = new Map(s.pools.map((p) => [p.name, p]));
  let used = usage(s);
  const destroy = (vm: WarmVmView, reason: DestroyReason) => {
    plan.destroy.push({ instanceId: vm.instanceId, pool: vm.pool ?? '', reason });
    if (HOLDING_STATES.has(vm.state)) used = add(used, vm, -1);
  };

  for (const vm of s.vms) {
    if (!isWarm(vm) || s.claimed.has(vm.instanceId)) continue;
    if (vm.state === 'exited' || vm.state === 'failed') destroy(vm, 'exited');
    else if (s.drain && !declared.has(vm.pool ?? '') && vm.state === 'running') destroy(vm, 'drained');
  }

  const wanting: Array<{ pool: DeclaredPool; want: number; outdated: WarmVmView[] }> = [];
  for (const pool of s.pools) {
    const v = poolView(pool.name, pool.hash, s);
    let excess = v.ready.length + v.booting - pool.replicas;
    for (const vm of v.ready) if (excess-- > 0) destroy(vm, 'surplus');
    const readyKept = Math.min(v.ready.length, pool.replicas);
    // Outdated VMs stay bindable until as many new ones are ready: replaced one for one.
    const keep = Math.max(0, pool.replicas - readyKept - v.outdatedBooting);
    const outdated = [...v.outdated];
    while (outdated.length > keep) destroy(outdated.shift() as WarmVmView, 'outdated');
    const want = pool.replicas - readyKept - v.booting;
    if (want <= 0) continue;
    const why = s.backoff.get(pool.name);
    if (why) plan.messages.set(pool.name, why);
    else wanting.push({ pool, want, outdated });
  }

  wanting.sort((a, b) => b.want - a.want || a.pool.name.localeCompare(b.pool.name));
  let slots = s.bootSlots;
  for (const { pool, want, outdated } of wanting) {
    if (slots <= 0) break;
    // No room for one more: replace in place (an outdated VM goes before its successor boots).
    if (!fits(used, pool.template, s.capacity) && outdated.length > 0) {
      destroy(outdated.shift() as WarmVmView, 'outdated');
    }
    for (let n = 0; n < want && slots > 0; n++) {
      if (!fits(used, pool.template, s.capacity)) {
        plan.messages.set(pool.name, describeFull(used, add(ZERO, pool.template), s.capacity));
        break;
      }
      plan.boot.push(pool);
      used = add(used, pool.template);
      slots--;
    }
  }
  return plan;
}

/**
 * The warm VMs to evict so that a VM of `need` fits (environments win over warm VMs): from the
 * pool with the most surplus over its replicas, its outdated VMs first, then the oldest. None
 * when it fits already or when evicting every ready warm VM would not make it fit.
 */
export function pickEvictions(s: NodeState, need: { cpus: number; memoryMiB: number }): WarmVmView[] {
  let used = usage(s);
  if (fits(used, need, s.capacity)) return [];
  const declared = new Map(s.pools.map((p) => [p.name, p]));
  const candidates = s.vms.filter(
    (vm) => isWarm(vm) && vm.state === 'running' && !s.claimed.has(vm.instanceId),
  );
  const count = new Map<string, number>();
  for (const vm of candidates) count.set(vm.pool ?? '', (count.get(vm.pool ?? '') ?? 0) + 1);
  const surplus = (pool: string) => (count.get(pool) ?? 0) - (declared.get(pool)?.replicas ?? 0);
  const picked: WarmVmView[] = [];
  while (!fits(used, need, s.capacity) && candidates.length > 0) {
    const pools = [...new Set(candidates.map((vm) => vm.pool ?? ''))].sort(
      (a, b) => surplus(b) - surplus(a) || a.localeCompare(b),
    );
    const pool = pools[0] as string;
    const hash = declared.get(pool)?.hash;
    const [vm] = candidates
      .filter((c) => c.pool === pool)
      .sort((a, b) => Number(a.templateHash === hash) - Number(b.templateHash === hash) || byAge(a, b));
    if (!vm) break;
    candidates.splice(candidates.indexOf(vm), 1);
    count.set(pool, (count.get(pool) ?? 0) - 1);
    picked.push(vm);
    used = add(used, vm, -1);
  }
  return fits(used, need, s.capacity) ? picked : [];
}
