import {
  chmod,
  chown,
  copyFile,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  statfs,
  truncate,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { type Accelerator, CREATE_DEADLINE_DEFAULTS } from '@waggle/crds';
import type { Logger } from 'pino';
import type { Client } from 'ssh2';
import { z } from 'zod';
import {
  InvalidArgumentError,
  ResourceExhaustedError,
  VMBootError,
  VMConflictError,
  VMExitedError,
  VMNotFoundError,
} from '../errors.ts';
import type { BackendInstance, VmBackend } from './backend.ts';
import { joinCgroupsPrefix, moveToCgroup, prepareCgroup, removeCgroup } from './cgroup-escape.ts';
import { CleanupStack } from './cleanup-stack.ts';
import { connectWhenAnswering, type FixupEndpoint, fixRestoredGuest } from './guest-fixup.ts';
import { generateEcdsaKeyPair } from './keys.ts';
import type { VMNetworks } from './network/vm-network.ts';
import { isOurProcess, pidsWithMarker, terminate } from './proc.ts';
import { QemuMicrovmBackend } from './qemu/backend.ts';
import { consoleTail, waitForGuestReady } from './readiness.ts';
import { fileIdentity, templateHash, templateOf } from './template.ts';
import { snapshotPaths, vmPaths } from './vm-paths.ts';
import {
  isOwned,
  newInstanceId,
  type OwnedVMRecord,
  parseRecord,
  sameSpec,
  type VMOrigin,
  type VMRecord,
  type VMSpec,
  type VMSpecInput,
  type VMTemplate,
  type VMTemplateInput,
  vmSpecSchema,
  vmTemplateSchema,
} from './vm-record.ts';

export { qemuIdentity } from './qemu/backend.ts';
export { snapshotPaths, vmPaths } from './vm-paths.ts';

export interface GuestImages {
  kernel: string;
  initrd: string;
  /** Base ext4 image per runtime; a runtime without one cannot be created here. */
  rootfs: Partial<Record<VMSpec['runtime'], string>>;
}

export interface VMManagerOptions {
  stateDir: string;
  images: GuestImages;
  /** Per-VM network namespaces and egress rules (docs/adr/0009-vm-network-boundary.md). */
  networks: VMNetworks;
  accelerator: Accelerator;
  tscKHz?: number;
  qemuBinary?: string;
  qemuImgBinary?: string;
  /** The hypervisor (default: QEMU microvm with the options above). */
  backend?: VmBackend;
  /** PEM bundle the guests should trust (the node's, by default); undefined: keep the image's. */
  caBundlePath?: string;
  bootTimeoutMs?: number;
  maxVMs?: number;
  /**
   * Snapshot each template once after its first cold boot (in the background) and restore later
   * creates of it from the snapshot (WAGGLE_SNAPSHOTS; docs/adr/0014). Default off here, on in
   * the agent's configuration.
   */
  snapshots?: boolean;
  /**
   * The most template snapshots kept on this node (WAGGLE_MAX_SNAPSHOTS, default 8): beyond it
   * the least recently restored one that no VM runs on is deleted. Callers choose templates
   * (sizes, allow-listed domains), so without a bound they could fill the node's disk.
   */
  maxSnapshots?: number;
  /** Move each QEMU into `<root>/<hierarchy>/<name>` so it survives the agent's container. */
  vmCgroup?: { root: string; name: string };
  log: Logger;
}

/** QEMU's own memory on top of the guest's (TCG translation cache, device models, heap). */
export const QEMU_OVERHEAD_MIB = 256;
/** Processes/threads one QEMU may have (vCPU threads, I/O worker pool, main loop). */
export const QEMU_MAX_PIDS = 256;
/** A guest's console log is cut back to its tail beyond this size (a guest can flood ttyS0). */
export const SERIAL_LOG_MAX_BYTES = 1 << 20;
/** How often running VMs are checked for a QEMU that went away. */
const MONITOR_INTERVAL_MS = 1_000;
const MiB = 1024 * 1024;
/** How long a restore's SSH connection waits for the agent to take it over. */
const HANDOFF_MS = 30_000;

/** What `<stateDir>/snapshots/<hash>/snapshot.json` says about a snapshot. */
const snapshotMetaSchema = z.object({
  templateHash: z.string(),
  template: vmTemplateSchema,
  hostPublicKey: z.string(),
  createdAt: z.string(),
  stateBytes: z.number(),
});
type SnapshotMeta = z.output<typeof snapshotMetaSchema>;

/** How a VM instance is started: from the image, from a template's snapshot, or a suspended state. */
type StartFrom = { kind: 'image' } | { kind: 'snapshot'; dir: string; meta: SnapshotMeta };

/**
 * Runs microVMs: one backend process (QEMU) per VM instance with its state in
 * `<stateDir>/vms/<instanceId>/`. A VM's API id (vm id) names its owner; warm VMs have none
 * until bound (docs/adr/0014). Processes outlive the agent; `adopt()` picks them up again.
 *
 * Methods for warm pools (src/pool/): `templateHash`, `bootWarm`, `bind`, `destroyInstance`,
 * `list` (all instances, owned or not), `getInstance`.
 */
export class VMManager {
  readonly #o: Required<Pick<VMManagerOptions, 'bootTimeoutMs' | 'maxVMs' | 'snapshots' | 'maxSnapshots'>> &
    VMManagerOptions;
  readonly #backend: VmBackend;
  /** Every instance by instance id. */
  readonly #vms = new Map<string, VMRecord>();
  /** vm id → instance id of the owned instances. */
  readonly #owners = new Map<string, string>();
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #vmsDir: string;
  readonly #snapshotsDir: string;
  /** Root connections left by restores and resumes for the agent to take over, by vm id. */
  /** Kept root connections by instance id (see #keepConnection). */
  readonly #handoff = new Map<string, { client: Client; timer: NodeJS.Timeout | undefined }>();
  /** Snapshot jobs queued or in flight, by template hash; they run one at a time. */
  readonly #snapshotJobs = new Map<string, Promise<void>>();
  #snapshotQueue: Promise<void> = Promise.resolve();
  /** Restores in flight per template hash (their disks are backed by its snapshot). */
  readonly #restoring = new Map<string, number>();
  /** VMs booted only to be snapshotted (not in #vms; they hold a slot while they run). */
  #snapshotVMs = 0;
  #monitor: NodeJS.Timeout | undefined;

  constructor(opts: VMManagerOptions) {
    this.#o = {
      bootTimeoutMs: CREATE_DEADLINE_DEFAULTS.guestBootMs,
      maxVMs: 16,
      snapshots: false,
      maxSnapshots: 8,
      ...opts,
    };
    this.#backend =
      opts.backend ??
      new QemuMicrovmBackend({
        accelerator: opts.accelerator,
        kernel: opts.images.kernel,
        initrd: opts.images.initrd,
        ...(opts.tscKHz ? { tscKHz: opts.tscKHz } : {}),
        ...(opts.qemuBinary ? { qemuBinary: opts.qemuBinary } : {}),
        ...(opts.qemuImgBinary ? { qemuImgBinary: opts.qemuImgBinary } : {}),
      });
    this.#vmsDir = join(opts.stateDir, 'vms');
    this.#snapshotsDir = join(opts.stateDir, 'snapshots');
  }

  get backend(): VmBackend {
    return this.#backend;
  }

  /** The state directory of an instance. */
  instanceDir(instanceId: string): string {
    return join(this.#vmsDir, instanceId);
  }

  /** The state directory of the instance `vmId` owns (VMNotFoundError if none). */
  vmDir(vmId: string): string {
    return this.instanceDir(this.get(vmId).instanceId);
  }

  #inst(vm: VMRecord): BackendInstance {
    return {
      instanceId: vm.instanceId,
      dir: this.instanceDir(vm.instanceId),
      template: templateOf(vm),
      network: vm.network,
    };
  }

  /** Every instance, owned or not (warm VMs have no vmId). */
  list(): VMRecord[] {
    return [...this.#vms.values()];
  }

  /** The instances that have an owner: what ListVMs shows. */
  listOwned(): OwnedVMRecord[] {
    return this.list().filter(isOwned);
  }

  /** VMs that hold a slot on this node (exited and suspended VMs hold none). */
  #live(): VMRecord[] {
    return this.list().filter((vm) => vm.state !== 'exited' && vm.state !== 'suspended');
  }

  /** Live VMs and VMs booted only to be snapshotted. */
  #liveCount(): number {
    return this.#live().length + this.#snapshotVMs;
  }

  /** The VM `vmId` owns. */
  get(vmId: string): OwnedVMRecord {
    const id = this.#owners.get(vmId);
    const vm = id === undefined ? undefined : this.#vms.get(id);
    if (!vm || !isOwned(vm)) throw new VMNotFoundError(vmId);
    return vm;
  }

  getInstance(instanceId: string): VMRecord {
    const vm = this.#vms.get(instanceId);
    if (!vm) throw new VMNotFoundError(instanceId);
    return vm;
  }

  /** Serializes operations on one key (`vm:<vmId>` or `i:<instanceId>`; always vm before i). */
  async #withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.#locks.set(
      key,
      next.catch(() => undefined),
    );
    try {
      return await next;
    } finally {
      if (this.#locks.get(key) === next || this.#locks.size > 1000) this.#locks.delete(key);
    }
  }

  /** The template hash of VMs of `template` on this node (images and backend included). */
  async templateHash(template: VMTemplateInput): Promise<string> {
    const base = this.#baseOf(template);
    const ca = this.#o.caBundlePath;
    const [kernel, initrd, rootfs, caBundle] = await Promise.all([
      fileIdentity(this.#o.images.kernel),
      fileIdentity(this.#o.images.initrd),
      fileIdentity(base),
      ca ? fileIdentity(ca).catch(() => undefined) : undefined,
    ]);
    return templateHash(template, {
      kernel,
      initrd,
      rootfs,
      ...(caBundle ? { caBundle } : {}),
      backend: this.#backend.kind,
    });
  }

  /** The root filesystem VMs of `template` overlay: its OCI image's, or the runtime's built-in one. */
  #baseOf(template: VMTemplateInput): string {
    if (template.image) return template.image.rootfs;
    const base = this.#o.images.rootfs[template.runtime];
    if (!base) throw new ResourceExhaustedError(`no image for runtime "${template.runtime}" on this node`);
    return base;
  }

  /**
   * Whether VMs of `template` are snapshotted and restored. Not for OCI images yet: the image
   * cache may collect a root filesystem a snapshot's disk is backed by.
   */
  #snapshotsFor(template: VMTemplateInput): boolean {
    return !!this.#o.snapshots && !template.image;
  }

  #parseSpec(input: VMSpecInput): VMSpec {
    const parsed = vmSpecSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new InvalidArgumentError(`${issue?.path.join('.') || 'spec'}: ${issue?.message}`);
    }
    return parsed.data;
  }

  /**
   * Refuses a VM beyond maxVMs. A VM booted only to be snapshotted is not counted: it goes away
   * within seconds, and starts only while a slot is free (so a node holds one more at most).
   */
  #checkCapacity(): void {
    const live = this.#live().length;
    if (live >= this.#o.maxVMs) {
      throw new ResourceExhaustedError(`this node already runs ${live} of ${this.#o.maxVMs} VMs`);
    }
  }

  /**
   * Creates a VM for `spec.vmId` and resolves when its guest is ready; idempotent for the same id
   * and spec. Restores the template's snapshot when this node has one (origin `restored`), else
   * boots (`cold`, and snapshots the template in the background). Binding warm VMs of a pool is
   * the pool's job (src/pool/), before this is called; `pool` is not used here.
   */
  async create(input: VMSpecInput, _opts: { pool?: string } = {}): Promise<OwnedVMRecord> {
    const spec = this.#parseSpec(input);
    return this.#withLock(`vm:${spec.vmId}`, async () => {
      const existingId = this.#owners.get(spec.vmId);
      const existing = existingId === undefined ? undefined : this.#vms.get(existingId);
      if (existing) {
        if (!sameSpec(existing, spec)) {
          throw new VMConflictError(`VM "${spec.vmId}" already exists with a different spec`);
        }
        if (existing.state === 'running' || existing.state === 'suspended') return existing as OwnedVMRecord;
        // An exited or failed instance is replaced by a new one.
        await this.#withLock(`i:${existing.instanceId}`, () => this.#removeInstance(existing.instanceId));
      }
      this.#checkCapacity();
      await this.#checkDiskRoom(spec.diskMiB * MiB);
      const template = templateOf(spec);
      const hash = await this.templateHash(template);
      const snap = this.#snapshotsFor(template) ? await this.#readSnapshot(hash) : undefined;
      if (snap) {
        try {
          return (await this.#restore(hash, () =>
            this.#start({
              vmId: spec.vmId,
              template,
              hash,
              origin: 'restored',
              from: { kind: 'snapshot', ...snap },
            }),
          )) as OwnedVMRecord;
        } catch (err) {
          // A snapshot that cannot be restored is deleted (unless VMs run on its disk); this
          // create boots instead.
          this.#o.log.warn(
            { vmId: spec.vmId, templateHash: hash, err: (err as Error).message },
            'restore failed; booting',
          );
          await this.#dropSnapshot(hash);
        }
      }
      const vm = (await this.#start({
        vmId: spec.vmId,
        template,
        hash,
        origin: 'cold',
        from: { kind: 'image' },
      })) as OwnedVMRecord;
      this.#scheduleSnapshot(template, hash);
      return vm;
    });
  }

  /**
   * Boots (or restores, when the template has a snapshot) a VM with no owner for warm pool
   * `pool` ("<namespace>/<name>"). Counts against maxVMs: ResourceExhaustedError when full.
   */
  async bootWarm(template: VMTemplateInput, pool: string): Promise<VMRecord> {
    const t = templateOf(vmTemplateSchema.parse(template));
    this.#checkCapacity();
    await this.#checkDiskRoom(t.diskMiB * MiB);
    const hash = await this.templateHash(t);
    const snap = this.#snapshotsFor(t) ? await this.#readSnapshot(hash) : undefined;
    if (snap) {
      try {
        return await this.#restore(hash, () =>
          this.#start({
            template: t,
            hash,
            pool,
            origin: 'restored',
            from: { kind: 'snapshot', ...snap },
          }),
        );
      } catch (err) {
        this.#o.log.warn(
          { pool, templateHash: hash, err: (err as Error).message },
          'restore failed; booting',
        );
        await this.#dropSnapshot(hash);
      }
    }
    const vm = await this.#start({ template: t, hash, pool, origin: 'cold', from: { kind: 'image' } });
    this.#scheduleSnapshot(t, hash);
    return vm;
  }

  /**
   * Gives a running unowned (warm) instance its owner: persists it, origin `warm`.
   * VMConflictError if the instance is owned or `vmId` is in use. No guest round trip: a warm VM
   * that was restored had its clock and randomness fixed when it was restored, one that booted
   * has its own (docs/adr/0014); the hostname is the same in every VM.
   */
  async bind(instanceId: string, vmId: string): Promise<OwnedVMRecord> {
    this.#parseSpec({ vmId, runtime: 'shell', cpus: 1, memoryMiB: 128, diskMiB: 512, egress: 'none' });
    return this.#withLock(`vm:${vmId}`, () =>
      this.#withLock(`i:${instanceId}`, async () => {
        const vm = this.getInstance(instanceId);
        if (vm.vmId !== undefined)
          throw new VMConflictError(`instance ${instanceId} is already bound to ${vm.vmId}`);
        if (this.#owners.has(vmId)) throw new VMConflictError(`VM "${vmId}" already exists`);
        if (vm.state !== 'running')
          throw new VMConflictError(`instance ${instanceId} is ${vm.state}, not running`);
        // On disk first: a failed write must not leave a VM bound in memory that a restart
        // would hand to the pool again (with this owner's data).
        const bound = { ...vm, vmId, origin: 'warm' as const, boundAt: new Date().toISOString() };
        await this.#persist(bound);
        Object.assign(vm, bound);
        this.#owners.set(vmId, instanceId);
        return vm as OwnedVMRecord; // WarmPools logs the bind, with its time
      }),
    );
  }

  /** Starts one instance and waits until its guest is ready; undoes everything if it fails. */
  async #start(o: {
    vmId?: string;
    template: VMTemplate;
    hash: string;
    pool?: string;
    origin: VMOrigin;
    from: StartFrom;
    /** Not recorded (a VM booted only to be snapshotted). */
    untracked?: boolean;
  }): Promise<VMRecord> {
    const instanceId = newInstanceId();
    const log = this.#o.log.child({ instanceId, ...(o.vmId ? { vmId: o.vmId } : {}) });
    const base = this.#baseOf(o.template);
    const t0 = Date.now();
    const dir = this.instanceDir(instanceId);
    const p = vmPaths(dir);
    const cleanup = new CleanupStack();
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      cleanup.push('state dir', () => rm(dir, { recursive: true, force: true }));

      let hostPublicKey: string;
      if (o.from.kind === 'snapshot') {
        // Restored guests keep the snapshot's host key; the agent's client key goes with it.
        const s = snapshotPaths(o.from.dir);
        await copyFile(s.clientKey, p.clientKey);
        await copyFile(s.authorizedKeys, p.authorizedKeys);
        await copyFile(s.hostKey, p.hostKey);
        hostPublicKey = o.from.meta.hostPublicKey;
      } else {
        const client = generateEcdsaKeyPair(`waggle-agent@${instanceId}`);
        const host = generateEcdsaKeyPair(`waggle-guest@${instanceId}`);
        await writeFile(p.clientKey, client.privateKey, { mode: 0o600 });
        await writeFile(p.authorizedKeys, `${client.publicKey}\n`, { mode: 0o600 });
        await writeFile(p.hostKey, host.privateKey, { mode: 0o600 });
        hostPublicKey = host.publicKey;
      }

      const net = await this.#o.networks.create(
        instanceId,
        {
          mode:
            o.template.egress === 'none' ? 'none' : o.template.allowDomains.length > 0 ? 'domains' : 'all',
          allowDomains: o.template.allowDomains,
        },
        cleanup,
      );
      const inst: BackendInstance = { instanceId, dir, template: o.template, network: net };
      const tNet = Date.now();
      const baseSize = (await stat(base)).size;
      await this.#backend.prepareDisk(
        inst,
        o.from.kind === 'snapshot'
          ? { kind: 'frozen', path: snapshotPaths(o.from.dir).disk }
          : { kind: 'image', path: base },
        Math.max(o.template.diskMiB * MiB, baseSize),
      );
      const pid = await this.#launch(
        inst,
        o.from.kind === 'snapshot' ? snapshotPaths(o.from.dir).state : undefined,
        cleanup,
      );
      const tLaunched = Date.now();
      cleanup.push('vm process', () => this.#backend.stop(inst, pid, 1_000));
      await this.#intoCgroup(inst, pid, cleanup);

      const record: VMRecord = {
        ...o.template,
        instanceId,
        ...(o.vmId ? { vmId: o.vmId } : {}),
        templateHash: o.hash,
        ...(o.pool ? { pool: o.pool } : {}),
        origin: o.origin,
        state: 'booting',
        network: net,
        pid,
        createdAt: new Date(t0).toISOString(),
        hostPublicKey,
      };
      if (!o.untracked) {
        this.#vms.set(instanceId, record);
        if (o.vmId) this.#owners.set(o.vmId, instanceId);
        cleanup.push('record', () => {
          this.#vms.delete(instanceId);
          if (o.vmId && this.#owners.get(o.vmId) === instanceId) this.#owners.delete(o.vmId);
        });
        await this.#persist(record);
      }
      log.info({ pid, nsIP: net.nsIP, origin: o.origin, templateHash: o.hash }, 'vm booting');

      let fixed: { sshMs: number; fixupMs: number } | undefined;
      if (o.from.kind === 'snapshot') fixed = await this.#fixGuest(record, t0);
      else {
        await this.#waitBooted(inst, pid);
        // A warm VM's first call after its bind should not pay an SSH handshake (~0.6 s on TCG).
        if (o.vmId === undefined && !o.untracked) await this.#preconnect(record);
      }
      record.state = 'running';
      record.readyAt = new Date().toISOString();
      record.bootMs = Date.now() - t0;
      if (!o.untracked) await this.#persist(record);
      cleanup.release();
      if (!o.untracked) this.#startMonitor();
      // Where the time went: set-up (keys, network), disk and process start, guest readiness.
      log.info(
        {
          bootMs: record.bootMs,
          origin: o.origin,
          setupMs: tNet - t0,
          launchMs: tLaunched - tNet,
          readyMs: Date.now() - tLaunched,
          ...fixed, // a restore's readiness: its SSH session, then the clock and RNG fix-up
        },
        'vm ready',
      );
      return record;
    } catch (err) {
      const errors = await cleanup.unwind();
      for (const e of errors) log.warn({ err: e }, 'cleanup after failed create');
      throw err;
    }
  }

  async #launch(
    inst: BackendInstance,
    incomingState: string | undefined,
    cleanup: CleanupStack,
  ): Promise<number> {
    const p = vmPaths(inst.dir);
    // QEMU starts inside its own cgroup: nothing it allocates (a restore loads the guest's memory
    // at once) is ever charged to the agent's container.
    let joinCgroup: string[] = [];
    if (this.#o.vmCgroup) {
      const { root, name } = this.#o.vmCgroup;
      const own = `${name}/${inst.instanceId}`;
      cleanup.push('vm cgroup', () => removeCgroup(root, own));
      joinCgroup = joinCgroupsPrefix(await prepareCgroup(root, own, this.#cgroupLimits(inst)));
    }
    const guestFiles: Record<string, string> = {
      authorized_keys: p.authorizedKeys,
      ssh_host_key: p.hostKey,
    };
    if (this.#o.caBundlePath) guestFiles.ca_bundle = this.#o.caBundlePath;
    return this.#backend
      .launch(inst, {
        guestFiles,
        execPrefix: [...joinCgroup, ...this.#o.networks.execPrefix(inst.network)],
        resolvConf: this.#o.networks.resolvConf(inst.network),
        ...(incomingState ? { incomingState } : {}),
      })
      .catch((err: Error) => {
        throw new VMBootError(`QEMU did not start: ${err.message}`);
      });
  }

  async #intoCgroup(inst: BackendInstance, pid: number, cleanup: CleanupStack): Promise<void> {
    if (!this.#o.vmCgroup) return;
    const { root, name } = this.#o.vmCgroup;
    const own = `${name}/${inst.instanceId}`;
    cleanup.push('vm cgroup', () => removeCgroup(root, own));
    // Already there since its launch (#launch); checked again, idempotently.
    await moveToCgroup(pid, root, own, this.#cgroupLimits(inst)).catch((err: Error) => {
      throw new VMBootError(`could not move QEMU into its own cgroup: ${err.message}`);
    });
  }

  #cgroupLimits(inst: BackendInstance) {
    return {
      cpus: inst.template.cpus,
      memoryBytes: (inst.template.memoryMiB + QEMU_OVERHEAD_MIB) * MiB,
      pids: QEMU_MAX_PIDS,
    };
  }

  async #removeCgroup(instanceId: string): Promise<void> {
    if (this.#o.vmCgroup) await removeCgroup(this.#o.vmCgroup.root, `${this.#o.vmCgroup.name}/${instanceId}`);
  }

  /** Waits for the readiness line of a booting guest. */
  async #waitBooted(inst: BackendInstance, pid: number): Promise<void> {
    let alive = true;
    const watch = setInterval(() => {
      void this.#backend.isAlive(inst, pid).then((a) => {
        alive = a;
      });
    }, 200);
    const readiness = await waitForGuestReady({
      serialLogPath: this.#backend.consolePath(inst),
      timeoutMs: this.#o.bootTimeoutMs,
      isAlive: () => alive,
    }).finally(() => clearInterval(watch));
    if (!readiness.ready) {
      throw new VMBootError(
        `VM ${inst.instanceId} did not become ready: ${readiness.reason}\n--- guest console:\n${await consoleTail(this.#backend.consolePath(inst))}`,
      );
    }
  }

  /**
   * Waits until a guest continued from a saved state answers SSH, then sets its clock from the
   * node's and mixes fresh randomness into its pool (docs/adr/0014).
   */
  async #fixGuest(vm: VMRecord, t0 = Date.now()): Promise<{ sshMs: number; fixupMs: number }> {
    const remaining = Math.max(1_000, this.#o.bootTimeoutMs - (Date.now() - t0));
    const inst = this.#inst(vm);
    let client: Awaited<ReturnType<typeof connectWhenAnswering>> | undefined;
    const tStart = Date.now();
    try {
      client = await Promise.race([
        connectWhenAnswering(await this.#guestEndpoint(vm), remaining),
        this.#whenDead(inst, vm.pid, remaining),
      ]);
      const tSsh = Date.now();
      await fixRestoredGuest(client);
      // An owned VM's first call takes it soon or never; a warm VM's waits for its bind.
      this.#keepConnection(vm.instanceId, client, vm.vmId === undefined ? undefined : HANDOFF_MS);
      client = undefined;
      return { sshMs: tSsh - tStart, fixupMs: Date.now() - tSsh };
    } catch (err) {
      const said = await this.#backend.startupLog(inst);
      throw new VMBootError(
        `VM ${vm.vmId ?? vm.instanceId} did not answer after its restore: ${(err as Error).message}` +
          (said ? `\n--- QEMU said:\n${said}` : ''),
      );
    } finally {
      client?.end();
    }
  }

  /** Where the agent reaches an instance's sshd as root: its namespace address, key, pinned host key. */
  async #guestEndpoint(vm: VMRecord): Promise<FixupEndpoint> {
    return {
      host: vm.network.nsIP,
      port: 22,
      privateKey: await readFile(vmPaths(this.instanceDir(vm.instanceId)).clientKey, 'utf8'),
      hostPublicKey: vm.hostPublicKey,
    };
  }

  /**
   * Keeps a ready root connection to an instance (opened by a restore, a resume, or for a warm
   * VM once booted) for the agent's first call to it (`takeGuestConnection`): that call saves an
   * SSH handshake. Closed after `ttlMs` if nobody takes it (never for a warm VM: until it is
   * bound and called, or destroyed); forgotten as soon as it closes.
   */
  #keepConnection(instanceId: string, client: Client, ttlMs: number | undefined): void {
    this.#dropConnection(instanceId);
    const timer = ttlMs === undefined ? undefined : setTimeout(() => this.#dropConnection(instanceId), ttlMs);
    timer?.unref();
    const forget = () => {
      if (this.#handoff.get(instanceId)?.client !== client) return;
      clearTimeout(this.#handoff.get(instanceId)?.timer);
      this.#handoff.delete(instanceId);
    };
    client.on('error', forget);
    client.once('close', forget);
    this.#handoff.set(instanceId, { client, timer });
  }

  #dropConnection(instanceId: string): void {
    const kept = this.#handoff.get(instanceId);
    if (!kept) return;
    this.#handoff.delete(instanceId);
    clearTimeout(kept.timer);
    kept.client.end();
  }

  /** The kept root SSH connection of a VM (restored, resumed or bound warm), once; else undefined. */
  takeGuestConnection(vmId: string): Client | undefined {
    const instanceId = this.#owners.get(vmId);
    const kept = instanceId === undefined ? undefined : this.#handoff.get(instanceId);
    if (!instanceId || !kept) return undefined;
    this.#handoff.delete(instanceId);
    clearTimeout(kept.timer);
    return kept.client;
  }

  /** Opens and keeps a warm VM's root connection (best effort: without one, the first call connects). */
  async #preconnect(vm: VMRecord): Promise<void> {
    try {
      const client = await connectWhenAnswering(await this.#guestEndpoint(vm), 10_000);
      this.#keepConnection(vm.instanceId, client, undefined);
    } catch (err) {
      this.#o.log.info(
        { instanceId: vm.instanceId, err: (err as Error).message },
        'warm vm: no kept connection',
      );
    }
  }

  /** Rejects once the instance's process is gone (never resolves). */
  #whenDead(inst: BackendInstance, pid: number, timeoutMs: number): Promise<never> {
    return new Promise((_, reject) => {
      const deadline = Date.now() + timeoutMs;
      const check = async () => {
        if (Date.now() > deadline) return;
        if (!(await this.#backend.isAlive(inst, pid))) return reject(new Error('QEMU exited'));
        setTimeout(() => void check(), 200).unref();
      };
      void check();
    });
  }

  async #persist(record: VMRecord): Promise<void> {
    const p = vmPaths(this.instanceDir(record.instanceId));
    await writeFile(`${p.record}.tmp`, JSON.stringify(record, null, 2), { mode: 0o600 });
    await rename(`${p.record}.tmp`, p.record);
  }

  /** Stops the VM `vmId` owns and removes everything it had (process, disk, keys, network). Idempotent. */
  destroy(vmId: string): Promise<boolean> {
    return this.#withLock(`vm:${vmId}`, async () => {
      const id = this.#owners.get(vmId);
      if (id === undefined) return false;
      await this.#withLock(`i:${id}`, () => this.#removeInstance(id));
      this.#o.log.info({ vmId, instanceId: id }, 'vm destroyed');
      return true;
    });
  }

  /** Stops and removes an instance (an unowned warm VM, or any). Idempotent. */
  destroyInstance(instanceId: string): Promise<boolean> {
    const vmId = this.#vms.get(instanceId)?.vmId;
    if (vmId !== undefined) return this.destroy(vmId);
    return this.#withLock(`i:${instanceId}`, async () => {
      const existed = this.#vms.has(instanceId);
      await this.#removeInstance(instanceId);
      if (existed) this.#o.log.info({ instanceId }, 'vm instance destroyed');
      return existed;
    });
  }

  /** Everything of one instance, whether or not it has a record. Call under its lock. */
  async #removeInstance(instanceId: string): Promise<void> {
    const vm = this.#vms.get(instanceId);
    const dir = this.instanceDir(instanceId);
    const marker = this.#backend.marker({ dir });
    if (vm) await this.#backend.stop({ dir }, vm.pid);
    for (const pid of await pidsWithMarker(marker)) await terminate(pid, marker);
    this.#dropConnection(instanceId);
    const record = vm ?? (await this.#readRecord(instanceId));
    if (record && !record.networkReleased) await this.#o.networks.destroy(instanceId, record.network);
    await this.#removeCgroup(instanceId);
    await rm(dir, { recursive: true, force: true });
    this.#vms.delete(instanceId);
    if (vm?.vmId !== undefined && this.#owners.get(vm.vmId) === instanceId) this.#owners.delete(vm.vmId);
  }

  /**
   * Saves the whole state of a running VM next to its overlay and stops its process: its memory,
   * CPU and cgroup are freed; its network namespace is kept. Idempotent for a suspended VM. The
   * caller closes its SSH connections to the VM first.
   */
  suspend(vmId: string): Promise<{ vm: OwnedVMRecord; stateBytes: number; suspendMs: number }> {
    return this.#withLock(`vm:${vmId}`, async () => {
      const vm = this.get(vmId);
      return this.#withLock(`i:${vm.instanceId}`, async () => {
        const p = vmPaths(this.instanceDir(vm.instanceId));
        if (vm.state === 'suspended') {
          const bytes = (await stat(p.suspendState).catch(() => undefined))?.size ?? 0;
          return { vm, stateBytes: bytes, suspendMs: 0 };
        }
        await this.#ensureAliveLocked(vm);
        if (vm.state !== 'running') {
          throw new InvalidArgumentError(`VM ${vmId} is ${vm.state}, not running; it cannot be suspended`);
        }
        await this.#checkDiskRoom(vm.memoryMiB * MiB, `saving the VM's memory needs ${vm.memoryMiB} MiB`);
        const t0 = Date.now();
        const inst = this.#inst(vm);
        this.#dropConnection(vm.instanceId);
        const { bytes } = await this.#backend.saveState(inst, vm.pid, p.suspendState).catch((err: Error) => {
          throw new VMBootError(`could not save VM ${vmId}: ${err.message}`);
        });
        await this.#removeCgroup(vm.instanceId);
        vm.state = 'suspended';
        vm.suspendedAt = new Date().toISOString();
        vm.pid = 0;
        await this.#persist(vm);
        const suspendMs = Date.now() - t0;
        this.#o.log.info({ vmId, instanceId: vm.instanceId, stateBytes: bytes, suspendMs }, 'vm suspended');
        return { vm, stateBytes: bytes, suspendMs };
      });
    });
  }

  /**
   * Continues a suspended VM from its saved state and resolves when its guest answers again
   * (clock fixed). Idempotent for a running VM (resumeMs 0).
   */
  resume(vmId: string): Promise<{ vm: OwnedVMRecord; resumeMs: number }> {
    return this.#withLock(`vm:${vmId}`, async () => {
      const vm = this.get(vmId);
      return this.#withLock(`i:${vm.instanceId}`, async () => {
        if (vm.state === 'running') return { vm, resumeMs: 0 };
        if (vm.state !== 'suspended') {
          throw new InvalidArgumentError(`VM ${vmId} is ${vm.state}, not suspended; it cannot be resumed`);
        }
        this.#checkCapacity();
        const t0 = Date.now();
        const inst = this.#inst(vm);
        const p = vmPaths(inst.dir);
        const cleanup = new CleanupStack();
        let tLaunched = t0;
        let fixed: { sshMs: number; fixupMs: number } | undefined;
        try {
          await this.#backend.verifyDisk(inst, await this.#trustedBackingFiles()).catch((err: Error) => {
            throw new VMBootError(`VM ${vmId} cannot be resumed: ${err.message}`);
          });
          const pid = await this.#launch(inst, p.suspendState, cleanup);
          cleanup.push('vm process', () => this.#backend.stop(inst, pid, 1_000));
          await this.#intoCgroup(inst, pid, cleanup);
          vm.pid = pid;
          tLaunched = Date.now();
          fixed = await this.#fixGuest(vm, t0);
          cleanup.release();
        } catch (err) {
          vm.pid = 0;
          for (const e of await cleanup.unwind())
            this.#o.log.warn({ vmId, err: e }, 'cleanup after failed resume');
          throw err;
        }
        // The saved state goes first: a crash before the record says running must not leave an
        // old memory image that a later adoption would continue on a changed disk.
        await rm(p.suspendState, { force: true });
        vm.state = 'running';
        vm.resumedAt = new Date().toISOString();
        vm.resumeMs = Date.now() - t0;
        await this.#persist(vm);
        this.#startMonitor();
        // Where the time went: the saved state loaded (launch), the SSH session, the fix-up.
        this.#o.log.info(
          { vmId, instanceId: vm.instanceId, resumeMs: vm.resumeMs, launchMs: tLaunched - t0, ...fixed },
          'vm resumed',
        );
        return { vm, resumeMs: vm.resumeMs };
      });
    });
  }

  /**
   * Refuses what would not fit on the state directory's filesystem: its free space, less what
   * the running VMs' overlays may still grow by, must hold `needBytes`. Snapshots and suspended
   * states already on disk are in the used space; the caller asks for the one it writes.
   */
  async #checkDiskRoom(
    needBytes: number,
    what = `the VM asks for ${Math.ceil(needBytes / MiB)} MiB`,
  ): Promise<void> {
    const fs = await statfs(this.#o.stateDir).catch(() => undefined);
    if (!fs) return;
    const free = fs.bavail * fs.bsize;
    let promised = 0;
    // Suspended VMs come back: their disk headroom stays promised.
    for (const vm of this.list().filter((v) => v.state !== 'exited')) {
      const used = await stat(vmPaths(this.instanceDir(vm.instanceId)).overlay)
        .then((st) => st.blocks * 512)
        .catch(() => 0);
      promised += Math.max(0, vm.diskMiB * MiB - used);
    }
    const saved = await this.#savedStateBytes();
    const room = free - promised;
    if (room < needBytes) {
      throw new ResourceExhaustedError(
        `this node has ${Math.max(0, Math.floor(room / MiB))} MiB of disk left for VMs ` +
          `(${Math.floor(free / MiB)} MiB free, ${Math.ceil(promised / MiB)} MiB promised to running VMs, ` +
          `${Math.ceil(saved / MiB)} MiB held by snapshots and suspended VMs); ${what}`,
      );
    }
  }

  /**
   * Files a VM's disk may be backed by: the runtime images, the OCI image root filesystems that
   * the agent's own records name, and snapshots' frozen disks.
   */
  async #trustedBackingFiles(): Promise<Set<string>> {
    const files = new Set<string>(Object.values(this.#o.images.rootfs).filter((f): f is string => !!f));
    for (const vm of this.#vms.values()) if (vm.image) files.add(vm.image.rootfs);
    for (const hash of await readdir(this.#snapshotsDir).catch(() => [] as string[])) {
      if (!hash.startsWith('.')) files.add(snapshotPaths(join(this.#snapshotsDir, hash)).disk);
    }
    return files;
  }

  /** Bytes of snapshots and suspended states on disk (reported by the disk-room check). */
  async #savedStateBytes(): Promise<number> {
    let n = 0;
    for (const vm of this.list()) {
      if (vm.state !== 'suspended') continue;
      n +=
        (await stat(vmPaths(this.instanceDir(vm.instanceId)).suspendState).catch(() => undefined))?.size ?? 0;
    }
    for (const hash of await readdir(this.#snapshotsDir).catch(() => [] as string[])) {
      const s = snapshotPaths(join(this.#snapshotsDir, hash));
      for (const f of [s.state, s.disk]) n += ((await stat(f).catch(() => undefined))?.blocks ?? 0) * 512;
    }
    return n;
  }

  // ---- snapshots ----

  /** The complete snapshot of a template hash on this node, if there is one. */
  async #readSnapshot(hash: string): Promise<{ dir: string; meta: SnapshotMeta } | undefined> {
    const dir = join(this.#snapshotsDir, hash);
    const raw = await readFile(snapshotPaths(dir).meta, 'utf8').catch(() => '');
    if (!raw) return undefined;
    try {
      const meta = snapshotMetaSchema.parse(JSON.parse(raw));
      return meta.templateHash === hash ? { dir, meta } : undefined;
    } catch {
      return undefined;
    }
  }

  /** True when this node holds a snapshot of `template` (restores will be used). */
  async hasSnapshot(template: VMTemplateInput): Promise<boolean> {
    return (await this.#readSnapshot(await this.templateHash(templateOf(template)))) !== undefined;
  }

  /** Resolves when the snapshot jobs in flight have finished (tests, shutdown). */
  async snapshotsSettled(): Promise<void> {
    while (this.#snapshotJobs.size > 0) await Promise.allSettled([...this.#snapshotJobs.values()]);
  }

  /** Runs a restore from `hash`'s snapshot, marking the snapshot in use and recently used. */
  async #restore<T>(hash: string, start: () => Promise<T>): Promise<T> {
    this.#restoring.set(hash, (this.#restoring.get(hash) ?? 0) + 1);
    const meta = snapshotPaths(join(this.#snapshotsDir, hash)).meta;
    const now = new Date();
    await utimes(meta, now, now).catch(() => undefined); // least recently restored goes first
    try {
      return await start();
    } finally {
      const n = (this.#restoring.get(hash) ?? 1) - 1;
      if (n > 0) this.#restoring.set(hash, n);
      else this.#restoring.delete(hash);
    }
  }

  #scheduleSnapshot(template: VMTemplate, hash: string): void {
    if (!this.#snapshotsFor(template) || this.#snapshotJobs.has(hash)) return;
    // One snapshot VM at a time on the node: each is a hidden boot (CPU, memory, a VM slot).
    const job = this.#snapshotQueue
      .then(() => this.#makeSnapshot(template, hash))
      .catch((err: Error) =>
        this.#o.log.warn({ templateHash: hash, err: err.message }, 'could not snapshot the template'),
      )
      .finally(() => this.#snapshotJobs.delete(hash));
    this.#snapshotQueue = job; // never rejects: a failed job does not stop the next
    this.#snapshotJobs.set(hash, job);
  }

  /**
   * Boots a dedicated VM of the template, waits until it is ready, saves its state into
   * `<stateDir>/snapshots/<hash>/` and keeps its disk as the snapshot's frozen disk.
   */
  async #makeSnapshot(template: VMTemplate, hash: string): Promise<void> {
    if (await this.#readSnapshot(hash)) return;
    if (this.#liveCount() >= this.#o.maxVMs) {
      this.#o.log.info({ templateHash: hash }, 'node full; the template is snapshotted after a later boot');
      return;
    }
    await this.#checkDiskRoom(
      template.memoryMiB * MiB + template.diskMiB * MiB,
      `a snapshot of the template needs ${template.memoryMiB + template.diskMiB} MiB (memory and disk)`,
    );
    const t0 = Date.now();
    this.#snapshotVMs++;
    let vm: VMRecord | undefined;
    try {
      vm = await this.#start({ template, hash, origin: 'cold', from: { kind: 'image' }, untracked: true });
      const inst = this.#inst(vm);
      await this.#warmForSnapshot(vm);
      const tmp = join(this.#snapshotsDir, `.${hash}.${vm.instanceId}`);
      await mkdir(tmp, { recursive: true, mode: 0o700 });
      try {
        const s = snapshotPaths(tmp);
        const { bytes } = await this.#backend.saveState(inst, vm.pid, s.state);
        const p = vmPaths(inst.dir);
        await rename(this.#backend.diskPath(inst), s.disk);
        await chown(s.disk, 0, 0);
        await chmod(s.disk, 0o400);
        await copyFile(p.clientKey, s.clientKey);
        await copyFile(p.authorizedKeys, s.authorizedKeys);
        await copyFile(p.hostKey, s.hostKey);
        const meta: SnapshotMeta = {
          templateHash: hash,
          template,
          hostPublicKey: vm.hostPublicKey,
          createdAt: new Date().toISOString(),
          stateBytes: bytes,
        };
        await writeFile(s.meta, JSON.stringify(meta, null, 2), { mode: 0o600 });
        await rename(tmp, join(this.#snapshotsDir, hash));
        this.#o.log.info(
          { templateHash: hash, stateBytes: bytes, ms: Date.now() - t0 },
          'template snapshotted',
        );
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    } finally {
      this.#snapshotVMs--;
      if (vm) {
        const dir = this.instanceDir(vm.instanceId);
        await this.#backend.stop({ dir }, vm.pid, 1_000);
        await this.#o.networks.destroy(vm.instanceId, vm.network);
        await this.#removeCgroup(vm.instanceId);
        await rm(dir, { recursive: true, force: true });
      }
    }
    await this.#pruneSnapshots();
  }

  /**
   * One SSH session with what a restore runs (the clock and randomness fix-up), closed before
   * the state is saved: the snapshot's memory then holds sshd's and those tools' pages, and the
   * first connection to each restored VM does not fault them in from disk.
   */
  async #warmForSnapshot(vm: VMRecord): Promise<void> {
    const client = await connectWhenAnswering(await this.#guestEndpoint(vm), this.#o.bootTimeoutMs);
    try {
      await fixRestoredGuest(client);
    } finally {
      client.end();
    }
    // Let the guest's sshd finish the session before its memory is saved.
    await new Promise((r) => setTimeout(r, 300));
  }

  /** True while a VM's disk may be backed by the snapshot's frozen disk (it was restored from it). */
  #snapshotInUse(hash: string): boolean {
    if ((this.#restoring.get(hash) ?? 0) > 0) return true;
    return this.list().some((vm) => vm.templateHash === hash && vm.origin !== 'cold');
  }

  /** Deletes a snapshot that failed to restore, unless restored VMs still run on its disk. */
  async #dropSnapshot(hash: string): Promise<void> {
    if (this.#snapshotInUse(hash)) return;
    await rm(join(this.#snapshotsDir, hash), { recursive: true, force: true });
    this.#o.log.warn({ templateHash: hash }, 'snapshot deleted');
  }

  /** Deletes snapshots that are incomplete or whose images (or template hashing) changed. */
  async #pruneSnapshots(): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await readdir(this.#snapshotsDir).catch(() => [] as string[])) {
      if (this.#snapshotJobs.has(name)) continue;
      const dir = join(this.#snapshotsDir, name);
      const snap = await this.#readSnapshot(name);
      let current = false;
      if (snap)
        current = await this.templateHash(snap.meta.template).then(
          (h) => h === name,
          () => false,
        );
      // A temporary directory of a job in flight is skipped (its job removes it).
      if (!current && !(name.startsWith('.') && this.#snapshotJobs.has(name.split('.')[1] ?? ''))) {
        // A restored instance's overlay may be backed by this disk: keep it while one uses it.
        const inUse = this.#snapshotInUse(name);
        if (inUse && snap) continue;
        await rm(dir, { recursive: true, force: true });
        removed.push(name);
      }
    }
    // Beyond the bound, the least recently restored snapshots no VM runs on go.
    const kept: Array<{ hash: string; usedAt: number }> = [];
    for (const name of await readdir(this.#snapshotsDir).catch(() => [] as string[])) {
      if (name.startsWith('.') || removed.includes(name)) continue;
      const usedAt = (await stat(snapshotPaths(join(this.#snapshotsDir, name)).meta).catch(() => undefined))
        ?.mtimeMs;
      if (usedAt !== undefined) kept.push({ hash: name, usedAt });
    }
    kept.sort((a, b) => a.usedAt - b.usedAt);
    let count = kept.length;
    for (const { hash } of kept) {
      if (count <= this.#o.maxSnapshots) break;
      if (this.#snapshotInUse(hash) || this.#snapshotJobs.has(hash)) continue;
      await rm(join(this.#snapshotsDir, hash), { recursive: true, force: true });
      removed.push(hash);
      count--;
    }
    if (removed.length > 0) this.#o.log.info({ removed }, 'snapshots removed (stale, or beyond the bound)');
    return removed;
  }

  // ---- monitoring and adoption ----

  #startMonitor(): void {
    if (this.#monitor) return;
    this.#monitor = setInterval(() => void this.#checkVMs(), MONITOR_INTERVAL_MS);
    this.#monitor.unref();
  }

  /** Stops watching the VMs (agent shutdown; they keep running). */
  close(): void {
    clearInterval(this.#monitor);
    this.#monitor = undefined;
    for (const instanceId of [...this.#handoff.keys()]) this.#dropConnection(instanceId);
  }

  /** Notices a running VM whose QEMU went away, and cuts flooded console logs back. */
  async #checkVMs(): Promise<void> {
    for (const vm of this.list()) {
      if (vm.state !== 'running') continue;
      const inst = this.#inst(vm);
      if (!(await this.#backend.isAlive(inst, vm.pid))) {
        await this.#withLock(`i:${vm.instanceId}`, () => this.#markExited(vm.instanceId)).catch(
          (err: Error) =>
            this.#o.log.warn({ instanceId: vm.instanceId, err: err.message }, 'could not record a VM exit'),
        );
        continue;
      }
      const log = this.#backend.consolePath(inst);
      const size = await stat(log)
        .then((st) => st.size)
        .catch(() => 0);
      if (size > SERIAL_LOG_MAX_BYTES) {
        const tail = await consoleTail(log, 50);
        await truncate(log, 0).catch(() => undefined);
        await writeFile(log, `[waggle: console log cut at ${size} bytes]\n${tail}\n`, { flag: 'a' });
      }
    }
  }

  /** The VM's QEMU is gone: record why, free its network and cgroup; the record stays for GetVM. */
  async #markExited(instanceId: string): Promise<void> {
    const vm = this.#vms.get(instanceId);
    if (vm?.state !== 'running') return;
    const inst = this.#inst(vm);
    if (await this.#backend.isAlive(inst, vm.pid)) return;
    const p = vmPaths(inst.dir);
    if (!(await stat(p.record).catch(() => undefined))) {
      // Destroyed by another manager of the same state dir (an agent that replaced this one):
      // its network is not ours to release any more.
      this.#vms.delete(instanceId);
      if (vm.vmId !== undefined && this.#owners.get(vm.vmId) === instanceId) this.#owners.delete(vm.vmId);
      return;
    }
    const qemuSaid = await this.#backend.startupLog(inst);
    const lastLines = await consoleTail(this.#backend.consolePath(inst), 10);
    // Free what it held first: once it reads 'exited', its network and cgroup are gone.
    await this.#o.networks
      .destroy(instanceId, vm.network)
      .catch((err: Error) =>
        this.#o.log.warn({ instanceId, err: err.message }, 'could not free an exited VM network'),
      );
    vm.networkReleased = true;
    await this.#removeCgroup(instanceId);
    vm.message =
      `QEMU (pid ${vm.pid}) exited while the VM was running` +
      (qemuSaid ? `: ${qemuSaid}` : ' (killed, crashed or out of memory)') +
      (lastLines.trim() ? `\n--- last console lines:\n${lastLines}` : '');
    vm.state = 'exited';
    await this.#persist(vm);
    this.#o.log.warn({ instanceId, vmId: vm.vmId, pid: vm.pid }, 'vm exited');
  }

  /**
   * Throws VMExitedError for a VM whose QEMU went away (checked now, not only by the monitor),
   * and VMSuspendedError for a suspended one.
   */
  async ensureAlive(vmId: string): Promise<void> {
    const vm = this.get(vmId);
    if (vm.state === 'running' && !(await this.#backend.isAlive(this.#inst(vm), vm.pid))) {
      await this.#withLock(`i:${vm.instanceId}`, () => this.#markExited(vm.instanceId));
    }
    if (vm.state === 'exited') throw new VMExitedError(vmId, vm.message ?? 'its QEMU is gone');
  }

  /** ensureAlive for a caller holding the instance's lock. */
  async #ensureAliveLocked(vm: VMRecord): Promise<void> {
    if (vm.state === 'running' && !(await this.#backend.isAlive(this.#inst(vm), vm.pid))) {
      await this.#markExited(vm.instanceId);
    }
    if (vm.state === 'exited')
      throw new VMExitedError(vm.vmId ?? vm.instanceId, vm.message ?? 'its QEMU is gone');
  }

  async #readRecord(instanceId: string): Promise<VMRecord | undefined> {
    const raw = await readFile(vmPaths(this.instanceDir(instanceId)).record, 'utf8').catch(() => '');
    if (!raw) return undefined;
    try {
      return parseRecord(JSON.parse(raw), instanceId);
    } catch {
      return undefined;
    }
  }

  #track(record: VMRecord): void {
    this.#vms.set(record.instanceId, record);
    if (record.vmId !== undefined) this.#owners.set(record.vmId, record.instanceId);
  }

  /**
   * After a restart: re-adopts VMs whose QEMU still runs (with their network namespace and DNS
   * forwarder) and suspended VMs, removes records whose VM is gone with everything they held,
   * kills QEMU processes under the state dir that have no record, removes VM namespaces nobody
   * owns, and deletes snapshots whose images changed. `adopted` lists instance ids.
   */
  async adopt(): Promise<{
    adopted: string[];
    removed: string[];
    orphansKilled: number;
    netnsReaped: number;
  }> {
    await mkdir(this.#vmsDir, { recursive: true, mode: 0o700 });
    await mkdir(this.#snapshotsDir, { recursive: true, mode: 0o700 });
    const adopted: string[] = [];
    const removed: string[] = [];
    for (const instanceId of await readdir(this.#vmsDir)) {
      const record = await this.#readRecord(instanceId);
      if (record?.state === 'exited') {
        this.#track(record); // kept for GetVM until DestroyVM; holds nothing
        continue;
      }
      const inst = record ? this.#inst(record) : undefined;
      if (
        record?.state === 'running' &&
        inst &&
        !(await this.#backend.isAlive(inst, record.pid)) &&
        (await stat(vmPaths(inst.dir).suspendState).catch(() => undefined))
      ) {
        // The agent stopped between saving the VM and recording it: it is suspended.
        record.state = 'suspended';
        record.suspendedAt ??= new Date().toISOString();
        record.pid = 0;
        await this.#persist(record);
      }
      if (record?.state === 'suspended' && inst) {
        try {
          await this.#o.networks.adoptIdle(instanceId, record.network).catch(async (err: Error) => {
            // Its namespace went with the agent's old container: it gets a new one (ResumeVM
            // starts QEMU there; the guest's own addresses do not change).
            this.#o.log.info({ instanceId, err: err.message }, 'suspended VM gets a new network');
            const cleanup = new CleanupStack();
            record.network = await this.#o.networks.create(
              instanceId,
              { mode: record.network.mode, allowDomains: record.network.allowDomains },
              cleanup,
            );
            cleanup.release();
            await this.#persist(record);
          });
          this.#track(record);
          adopted.push(instanceId);
          continue;
        } catch (err) {
          this.#o.log.warn(
            { instanceId, err: (err as Error).message },
            'cannot re-adopt the suspended VM network; removing the VM',
          );
        }
      }
      if (record?.state === 'running' && inst && (await this.#backend.isAlive(inst, record.pid))) {
        try {
          await this.#o.networks.adopt(instanceId, record.network, record.pid);
          // Left by a resume the agent did not finish tidying up after.
          await rm(vmPaths(inst.dir).suspendState, { force: true });
          // Left paused by a suspend the agent did not finish (its save pauses the VM first).
          // Not a reason to remove the VM if asking fails: its calls then say what is wrong.
          const resumed = await this.#backend.ensureRunning(inst).catch((err: Error) => {
            this.#o.log.warn({ instanceId, err: err.message }, 'could not check the adopted VM is running');
            return false;
          });
          if (resumed)
            this.#o.log.warn({ instanceId }, 'adopted VM was paused by an unfinished suspend; running again');
          this.#track(record);
          adopted.push(instanceId);
          continue;
        } catch (err) {
          this.#o.log.warn(
            { instanceId, err: (err as Error).message },
            'cannot re-adopt the VM network; removing the VM',
          );
        }
      }
      const marker = this.#backend.marker({ dir: this.instanceDir(instanceId) });
      for (const pid of await pidsWithMarker(marker)) await terminate(pid, marker);
      if (record && !record.networkReleased) await this.#o.networks.destroy(instanceId, record.network);
      await this.#removeCgroup(instanceId);
      await rm(this.instanceDir(instanceId), { recursive: true, force: true });
      removed.push(instanceId);
    }
    let orphansKilled = 0;
    for (const pid of await pidsWithMarker(`${this.#vmsDir}/`)) {
      if (!(await isOurProcess(pid, 'qemu-system'))) continue;
      const known = [...this.#vms.values()].some((vm) => vm.pid === pid);
      if (!known) {
        await terminate(pid, `${this.#vmsDir}/`);
        orphansKilled++;
      }
    }
    const reaped = await this.#o.networks.reapOrphans(
      new Set(
        this.list()
          .filter((vm) => !vm.networkReleased)
          .map((vm) => vm.network.netns),
      ),
    );
    await this.#pruneSnapshots();
    if (adopted.length > 0) this.#startMonitor();
    this.#o.log.info(
      { adopted: adopted.length, removed: removed.length, orphansKilled, netnsReaped: reaped.length },
      'adopted existing VMs',
    );
    return { adopted, removed, orphansKilled, netnsReaped: reaped.length };
  }
}
