import type { VMTemplate } from './pool-spec.ts';

/** What the pool logic reads of a VM record (the manager's VMRecord has all of it). */
export interface WarmVmView {
  /** Never changes; names the VM's state directory, process and cgroup. */
  instanceId: string;
  /** The owner; absent while the VM waits in a pool. */
  vmId?: string | undefined;
  /** The pool it was booted for ("<ns>/<name>"), kept after a bind. */
  pool?: string | undefined;
  templateHash?: string | undefined;
  state: string;
  cpus: number;
  memoryMiB: number;
  createdAt: string;
}

/**
 * The VM operations warm pools need; the VM manager provides them. A seam so the pool logic is
 * tested against a fake without QEMU.
 */
export interface WarmVmHost<R extends WarmVmView = WarmVmView> {
  /** Every VM record on the node (owned, warm, exited). */
  list(): R[];
  /** The template's hash as the host stamps it on the VMs it boots (docs/adr/0014, "Templates"). */
  templateHash(template: VMTemplate): string | Promise<string>;
  /** Boots an unowned VM of `template` for `pool`; resolves when it is ready (or rejects). */
  bootWarm(template: VMTemplate, pool: string): Promise<R>;
  /** Makes the warm VM `instanceId` the VM `vmId` (origin warm). */
  bind(instanceId: string, vmId: string): Promise<R>;
  /** Stops the VM and removes everything it had. */
  destroyInstance(instanceId: string): Promise<boolean>;
}

/** States in which a VM holds a slot, CPUs and memory of the node. */
export const HOLDING_STATES: ReadonlySet<string> = new Set(['booting', 'running']);

export const isUnowned = (vm: WarmVmView): boolean => !vm.vmId;
/** A VM waiting in a pool (booting, ready or dead), not bound to anyone. */
export const isWarm = (vm: WarmVmView): boolean => !vm.vmId && !!vm.pool;
