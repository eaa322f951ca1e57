import type { VMTemplate } from './pool-spec.ts';
import type { WarmVmHost, WarmVmView } from './warm-host.ts';

export interface FakeVm extends WarmVmView {
  runtime: string;
}

/**
 * A VM host without VMs for the pool logic's tests: boots are held until released (or finish on
 * the next macrotask with `autoBoot`), binds take a macrotask, and it fails a test that binds
 * an owned VM or boots more VMs at once than allowed.
 */
export class FakeWarmHost implements WarmVmHost<FakeVm> {
  vms: FakeVm[] = [];
  autoBoot: boolean;
  /** Boots waiting for release(), oldest first. */
  readonly held: Array<{ vm: FakeVm; finish: (ok: boolean) => void }> = [];
  booting = 0;
  maxBooting = 0;
  boots = 0;
  failBoots = false;
  readonly errors: string[] = [];
  /** Called after every change of the VM list (to check invariants at every step). */
  onChange: (() => void) | undefined;
  #seq = 0;
  #clock = 0;

  constructor(opts: { autoBoot?: boolean } = {}) {
    this.autoBoot = opts.autoBoot ?? true;
  }

  list(): FakeVm[] {
    return this.vms.map((vm) => ({ ...vm }));
  }

  templateHash(t: VMTemplate): string {
    return `${t.runtime}.${t.cpus}.${t.memoryMiB}.${t.diskMiB}.${t.egress}`;
  }

  /** Adds a VM as if adopted after a restart or created by CreateVM. */
  add(vm: Partial<FakeVm> & { pool?: string; templateHash?: string }): FakeVm {
    const rec: FakeVm = {
      instanceId: `i-${++this.#seq}`,
      state: 'running',
      cpus: 1,
      memoryMiB: 256,
      runtime: 'python',
      createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, ++this.#clock)).toISOString(),
      ...vm,
    };
    this.vms.push(rec);
    this.onChange?.();
    return rec;
  }

  bootWarm(template: VMTemplate, pool: string): Promise<FakeVm> {
    if (this.failBoots) return Promise.reject(new Error('no image for runtime'));
    const vm = this.add({
      state: 'booting',
      pool,
      templateHash: this.templateHash(template),
      cpus: template.cpus,
      memoryMiB: template.memoryMiB,
      runtime: template.runtime,
    });
    this.boots++;
    this.booting++;
    this.maxBooting = Math.max(this.maxBooting, this.booting);
    return new Promise((resolve, reject) => {
      const finish = (ok: boolean) => {
        this.booting--;
        const live = this.vms.find((v) => v.instanceId === vm.instanceId);
        if (!ok || !live) {
          this.vms = this.vms.filter((v) => v.instanceId !== vm.instanceId);
          this.onChange?.();
          reject(new Error('did not become ready'));
          return;
        }
        live.state = 'running';
        this.onChange?.();
        resolve({ ...live });
      };
      if (this.autoBoot) setTimeout(() => finish(true), 0);
      else this.held.push({ vm, finish });
    });
  }

  /** Finishes the oldest held boot. */
  release(ok = true): void {
    const boot = this.held.shift();
    if (!boot) throw new Error('no boot is held');
    boot.finish(ok);
  }

  async bind(instanceId: string, vmId: string): Promise<FakeVm> {
    await new Promise((r) => setTimeout(r, 1));
    const vm = this.vms.find((v) => v.instanceId === instanceId);
    if (!vm) throw new Error(`no instance ${instanceId}`);
    if (vm.vmId) this.errors.push(`${instanceId} bound twice (${vm.vmId}, ${vmId})`);
    if (vm.state !== 'running') throw new Error(`${instanceId} is ${vm.state}`);
    vm.vmId = vmId;
    this.onChange?.();
    return { ...vm };
  }

  async destroyInstance(instanceId: string): Promise<boolean> {
    const had = this.vms.some((v) => v.instanceId === instanceId);
    this.vms = this.vms.filter((v) => v.instanceId !== instanceId);
    this.onChange?.();
    return had;
  }

  setState(instanceId: string | undefined, state: string): void {
    for (const vm of this.vms) if (vm.instanceId === instanceId) vm.state = state;
  }

  warm(pool?: string): FakeVm[] {
    return this.vms.filter((v) => !v.vmId && v.pool && (pool === undefined || v.pool === pool));
  }
}
