import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, statfs, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Accelerator, CREATE_DEADLINE_DEFAULTS } from '@waggle/crds';
import type { Logger } from 'pino';
import {
  InvalidArgumentError,
  ResourceExhaustedError,
  VMBootError,
  VMConflictError,
  VMExitedError,
  VMNotFoundError,
} from '../errors.ts';
import { moveToCgroup, removeCgroup } from './cgroup-escape.ts';
import { CleanupStack } from './cleanup-stack.ts';
import { generateEcdsaKeyPair } from './keys.ts';
import type { VMNetwork, VMNetworks } from './network/vm-network.ts';
import { isOurProcess, pidsWithMarker, terminate } from './proc.ts';
import { buildQemuArgs } from './qemu-args.ts';
import { launchDetached } from './qemu-launch.ts';
import { consoleTail, waitForGuestReady } from './readiness.ts';
import {
  sameSpec,
  type VMRecord,
  type VMSpec,
  type VMSpecInput,
  vmRecordSchema,
  vmSpecSchema,
} from './vm-record.ts';

const run = promisify(execFile);

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
  /** PEM bundle the guests should trust (the node's, by default); undefined: keep the image's. */
  caBundlePath?: string;
  bootTimeoutMs?: number;
  maxVMs?: number;
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

/** Files of one VM inside its state directory. */
export function vmPaths(vmDir: string) {
  return {
    record: join(vmDir, 'vm.json'),
    overlay: join(vmDir, 'overlay.qcow2'),
    clientKey: join(vmDir, 'id_ecdsa'),
    authorizedKeys: join(vmDir, 'authorized_keys'),
    hostKey: join(vmDir, 'ssh_host_key'),
    serialLog: join(vmDir, 'serial.log'),
    qmp: join(vmDir, 'qmp.sock'),
    pidFile: join(vmDir, 'qemu.pid'),
    /** QEMU's own stderr (start-up errors). */
    qemuLog: join(vmDir, 'qemu.log'),
    /** Empty directory QEMU chroots into once started. */
    chroot: join(vmDir, 'root'),
  };
}

/**
 * Runs microVMs: one detached QEMU per VM with its state in `<stateDir>/vms/<vmId>/`. QEMU
 * outlives the agent process; `adopt()` picks running VMs up again after a restart.
 */
export class VMManager {
  readonly #o: Required<Pick<VMManagerOptions, 'qemuBinary' | 'qemuImgBinary' | 'bootTimeoutMs' | 'maxVMs'>> &
    VMManagerOptions;
  readonly #vms = new Map<string, VMRecord>();
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #vmsDir: string;
  #monitor: NodeJS.Timeout | undefined;

  constructor(opts: VMManagerOptions) {
    this.#o = {
      qemuBinary: 'qemu-system-x86_64',
      qemuImgBinary: 'qemu-img',
      bootTimeoutMs: CREATE_DEADLINE_DEFAULTS.guestBootMs,
      maxVMs: 16,
      ...opts,
    };
    this.#vmsDir = join(opts.stateDir, 'vms');
  }

  vmDir(vmId: string): string {
    return join(this.#vmsDir, vmId);
  }

  /** A marker only this VM's QEMU has on its command line. */
  #marker(vmId: string): string {
    return `${this.vmDir(vmId)}/`;
  }

  list(): VMRecord[] {
    return [...this.#vms.values()];
  }

  /** VMs that hold a slot on this node (an exited VM holds none; its record stays until destroyed). */
  #live(): VMRecord[] {
    return this.list().filter((vm) => vm.state !== 'exited');
  }

  get(vmId: string): VMRecord {
    const vm = this.#vms.get(vmId);
    if (!vm) throw new VMNotFoundError(vmId);
    return vm;
  }

  /** Serializes operations on one VM id. */
  async #withLock<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(vmId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.#locks.set(
      vmId,
      next.catch(() => undefined),
    );
    try {
      return await next;
    } finally {
      if (this.#locks.get(vmId) === next || this.#locks.size > 1000) this.#locks.delete(vmId);
    }
  }

  /** Creates and boots a VM; idempotent for the same id and spec. Resolves when SSH is ready. */
  async create(input: VMSpecInput): Promise<VMRecord> {
    const parsed = vmSpecSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new InvalidArgumentError(`${issue?.path.join('.') || 'spec'}: ${issue?.message}`);
    }
    const spec = parsed.data;
    return this.#withLock(spec.vmId, async () => {
      const existing = this.#vms.get(spec.vmId);
      if (existing) {
        if (!sameSpec(existing, spec)) {
          throw new VMConflictError(`VM "${spec.vmId}" already exists with a different spec`);
        }
        if (existing.state === 'running') return existing;
      }
      const live = this.#live().length;
      if (live >= this.#o.maxVMs) {
        throw new ResourceExhaustedError(`this node already runs ${live} of ${this.#o.maxVMs} VMs`);
      }
      await this.#checkDiskRoom(spec);
      return this.#boot(spec);
    });
  }

  async #boot(spec: VMSpec): Promise<VMRecord> {
    const log = this.#o.log.child({ vmId: spec.vmId });
    const base = this.#o.images.rootfs[spec.runtime];
    if (!base) throw new ResourceExhaustedError(`no image for runtime "${spec.runtime}" on this node`);
    const t0 = Date.now();
    const dir = this.vmDir(spec.vmId);
    const p = vmPaths(dir);
    const cleanup = new CleanupStack();
    try {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true, mode: 0o700 });
      cleanup.push('state dir', () => rm(dir, { recursive: true, force: true }));

      const client = generateEcdsaKeyPair(`waggle-agent@${spec.vmId}`);
      const host = generateEcdsaKeyPair(`waggle-guest@${spec.vmId}`);
      await writeFile(p.clientKey, client.privateKey, { mode: 0o600 });
      await writeFile(p.authorizedKeys, `${client.publicKey}\n`, { mode: 0o600 });
      await writeFile(p.hostKey, host.privateKey, { mode: 0o600 });

      const baseSize = (await stat(base)).size;
      const diskBytes = Math.max(spec.diskMiB * 1024 * 1024, baseSize);
      await run(this.#o.qemuImgBinary, [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-F',
        'raw',
        '-b',
        base,
        p.overlay,
        String(diskBytes),
      ]);

      const net = await this.#o.networks.create(
        spec.vmId,
        {
          mode: spec.egress === 'none' ? 'none' : spec.allowDomains.length > 0 ? 'domains' : 'all',
          allowDomains: spec.allowDomains,
        },
        cleanup,
      );
      // QEMU chroots here once started; libslirp reads /etc/resolv.conf after that, lazily.
      await mkdir(join(p.chroot, 'etc'), { recursive: true, mode: 0o555 });
      await writeFile(join(p.chroot, 'etc', 'resolv.conf'), this.#o.networks.resolvConf(net), {
        mode: 0o444,
      });
      const qemuId = qemuIdentity(net);

      const fwCfgFiles: Record<string, string> = {
        authorized_keys: p.authorizedKeys,
        ssh_host_key: p.hostKey,
      };
      if (this.#o.caBundlePath) fwCfgFiles.ca_bundle = this.#o.caBundlePath;
      const args = buildQemuArgs({
        name: `waggle-${spec.vmId}`,
        accelerator: this.#o.accelerator,
        cpus: spec.cpus,
        memoryMiB: spec.memoryMiB,
        kernelPath: this.#o.images.kernel,
        initrdPath: this.#o.images.initrd,
        overlayPath: p.overlay,
        sshForward: { host: net.nsIP, port: 22 },
        egress: spec.egress,
        confine: { uid: qemuId, gid: qemuId, chrootDir: p.chroot },
        fwCfgFiles,
        serialLogPath: p.serialLog,
        qmpSocketPath: p.qmp,
        pidFilePath: p.pidFile,
        ...(this.#o.tscKHz ? { tscKHz: this.#o.tscKHz } : {}),
      });
      const pid = await launchDetached({
        command: [...this.#o.networks.execPrefix(net), this.#o.qemuBinary, ...args],
        pidFile: p.pidFile,
        logPath: p.qemuLog,
      }).catch((err: Error) => {
        throw new VMBootError(`QEMU did not start: ${err.message}`);
      });
      const marker = this.#marker(spec.vmId);
      cleanup.push('qemu process', () => terminate(pid, marker, 1_000));
      if (this.#o.vmCgroup) {
        const { root, name } = this.#o.vmCgroup;
        const own = `${name}/${spec.vmId}`;
        cleanup.push('vm cgroup', () => removeCgroup(root, own));
        await moveToCgroup(pid, root, own, {
          cpus: spec.cpus,
          memoryBytes: (spec.memoryMiB + QEMU_OVERHEAD_MIB) * 1024 * 1024,
          pids: QEMU_MAX_PIDS,
        }).catch((err: Error) => {
          throw new VMBootError(`could not move QEMU into its own cgroup: ${err.message}`);
        });
      }

      const record: VMRecord = {
        ...spec,
        state: 'booting',
        network: net,
        pid,
        createdAt: new Date(t0).toISOString(),
        hostPublicKey: host.publicKey,
      };
      this.#vms.set(spec.vmId, record);
      cleanup.push('record', () => {
        this.#vms.delete(spec.vmId);
      });
      await this.#persist(record);
      log.info({ pid, nsIP: net.nsIP, accelerator: this.#o.accelerator }, 'vm booting');

      let alive = true;
      const watch = setInterval(() => {
        void isOurProcess(pid, marker).then((a) => {
          alive = a;
        });
      }, 200);
      const readiness = await waitForGuestReady({
        serialLogPath: p.serialLog,
        timeoutMs: this.#o.bootTimeoutMs,
        isAlive: () => alive,
      }).finally(() => clearInterval(watch));
      if (!readiness.ready) {
        throw new VMBootError(
          `VM ${spec.vmId} did not become ready: ${readiness.reason}\n--- guest console:\n${await consoleTail(p.serialLog)}`,
        );
      }
      record.state = 'running';
      record.readyAt = new Date().toISOString();
      record.bootMs = Date.now() - t0;
      await this.#persist(record);
      cleanup.release();
      this.#startMonitor();
      log.info({ bootMs: record.bootMs }, 'vm ready');
      return record;
    } catch (err) {
      const errors = await cleanup.unwind();
      for (const e of errors) log.warn({ err: e }, 'cleanup after failed create');
      throw err;
    }
  }

  async #persist(record: VMRecord): Promise<void> {
    const p = vmPaths(this.vmDir(record.vmId));
    await writeFile(`${p.record}.tmp`, JSON.stringify(record, null, 2), { mode: 0o600 });
    await run('mv', ['-f', `${p.record}.tmp`, p.record]);
  }

  /** Stops the VM and removes everything it had (process, overlay, keys, port). Idempotent. */
  destroy(vmId: string): Promise<boolean> {
    return this.#withLock(vmId, async () => {
      const vm = this.#vms.get(vmId);
      const dir = this.vmDir(vmId);
      const marker = this.#marker(vmId);
      if (vm) await terminate(vm.pid, marker);
      for (const pid of await pidsWithMarker(marker)) await terminate(pid, marker);
      const record = vm ?? (await this.#readRecord(vmId));
      if (record && !record.networkReleased) await this.#o.networks.destroy(vmId, record.network);
      if (this.#o.vmCgroup) await removeCgroup(this.#o.vmCgroup.root, `${this.#o.vmCgroup.name}/${vmId}`);
      await rm(dir, { recursive: true, force: true });
      this.#vms.delete(vmId);
      if (vm) this.#o.log.info({ vmId }, 'vm destroyed');
      return vm !== undefined;
    });
  }

  /**
   * Refuses a VM whose disk could not grow to its size: the free space of the state directory's
   * filesystem, less what the running VMs' overlays may still grow by, must hold `diskMiB`.
   */
  async #checkDiskRoom(spec: VMSpec): Promise<void> {
    const fs = await statfs(this.#vmsDir).catch(() => undefined);
    if (!fs) return;
    const free = fs.bavail * fs.bsize;
    let promised = 0;
    for (const vm of this.#live()) {
      const used = await stat(vmPaths(this.vmDir(vm.vmId)).overlay)
        .then((st) => st.blocks * 512)
        .catch(() => 0);
      promised += Math.max(0, vm.diskMiB * 1024 * 1024 - used);
    }
    const room = free - promised;
    const MiB = 1024 * 1024;
    if (room < spec.diskMiB * MiB) {
      throw new ResourceExhaustedError(
        `this node has ${Math.max(0, Math.floor(room / MiB))} MiB of disk left for VMs ` +
          `(${Math.floor(free / MiB)} MiB free, ${Math.ceil(promised / MiB)} MiB promised to running VMs); ` +
          `the VM asks for ${spec.diskMiB} MiB`,
      );
    }
  }

  #startMonitor(): void {
    if (this.#monitor) return;
    this.#monitor = setInterval(() => void this.#checkVMs(), MONITOR_INTERVAL_MS);
    this.#monitor.unref();
  }

  /** Stops watching the VMs (agent shutdown; they keep running). */
  close(): void {
    clearInterval(this.#monitor);
    this.#monitor = undefined;
  }

  /** Notices a running VM whose QEMU went away, and cuts flooded console logs back. */
  async #checkVMs(): Promise<void> {
    for (const vm of this.list()) {
      if (vm.state !== 'running') continue;
      const p = vmPaths(this.vmDir(vm.vmId));
      if (!(await isOurProcess(vm.pid, this.#marker(vm.vmId)))) {
        await this.#withLock(vm.vmId, () => this.#markExited(vm.vmId)).catch((err: Error) =>
          this.#o.log.warn({ vmId: vm.vmId, err: err.message }, 'could not record a VM exit'),
        );
        continue;
      }
      const size = await stat(p.serialLog)
        .then((st) => st.size)
        .catch(() => 0);
      if (size > SERIAL_LOG_MAX_BYTES) {
        const tail = await consoleTail(p.serialLog, 50);
        await truncate(p.serialLog, 0).catch(() => undefined);
        await writeFile(p.serialLog, `[waggle: console log cut at ${size} bytes]\n${tail}\n`, { flag: 'a' });
      }
    }
  }

  /** The VM's QEMU is gone: record why, free its network and cgroup; the record stays for GetVM. */
  async #markExited(vmId: string): Promise<void> {
    const vm = this.#vms.get(vmId);
    if (vm?.state !== 'running' || (await isOurProcess(vm.pid, this.#marker(vmId)))) return;
    const p = vmPaths(this.vmDir(vmId));
    if (!(await stat(p.record).catch(() => undefined))) {
      // Destroyed by another manager of the same state dir (an agent that replaced this one):
      // its network is not ours to release any more.
      this.#vms.delete(vmId);
      return;
    }
    const qemuSaid = (await readFile(p.qemuLog, 'utf8').catch(() => ''))
      .trim()
      .split('\n')
      .slice(-3)
      .join('\n');
    const lastLines = await consoleTail(p.serialLog, 10);
    // Free what it held first: once it reads 'exited', its network and cgroup are gone.
    await this.#o.networks
      .destroy(vmId, vm.network)
      .catch((err: Error) =>
        this.#o.log.warn({ vmId, err: err.message }, 'could not free an exited VM network'),
      );
    vm.networkReleased = true;
    if (this.#o.vmCgroup) await removeCgroup(this.#o.vmCgroup.root, `${this.#o.vmCgroup.name}/${vmId}`);
    vm.message =
      `QEMU (pid ${vm.pid}) exited while the VM was running` +
      (qemuSaid ? `: ${qemuSaid}` : ' (killed, crashed or out of memory)') +
      (lastLines.trim() ? `\n--- last console lines:\n${lastLines}` : '');
    vm.state = 'exited';
    await this.#persist(vm);
    this.#o.log.warn({ vmId, pid: vm.pid }, 'vm exited');
  }

  /** Throws VMExitedError for a VM whose QEMU went away (checked now, not only by the monitor). */
  async ensureAlive(vmId: string): Promise<void> {
    const vm = this.get(vmId);
    if (vm.state === 'running' && !(await isOurProcess(vm.pid, this.#marker(vmId)))) {
      await this.#withLock(vmId, () => this.#markExited(vmId));
    }
    if (vm.state === 'exited') throw new VMExitedError(vmId, vm.message ?? 'its QEMU is gone');
  }

  async #readRecord(vmId: string): Promise<VMRecord | undefined> {
    const raw = await readFile(vmPaths(this.vmDir(vmId)).record, 'utf8').catch(() => '');
    if (!raw) return undefined;
    try {
      const parsed = vmRecordSchema.safeParse(JSON.parse(raw));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * After a restart: re-adopts VMs whose QEMU still runs (with their network namespace and DNS
   * forwarder), removes records whose VM is gone with everything they held, kills QEMU processes
   * under the state dir that have no record, and removes VM namespaces nobody owns.
   */
  async adopt(): Promise<{
    adopted: string[];
    removed: string[];
    orphansKilled: number;
    netnsReaped: number;
  }> {
    await mkdir(this.#vmsDir, { recursive: true, mode: 0o700 });
    const adopted: string[] = [];
    const removed: string[] = [];
    for (const vmId of await readdir(this.#vmsDir)) {
      const record = await this.#readRecord(vmId);
      if (record?.state === 'exited') {
        this.#vms.set(vmId, record); // kept for GetVM until DestroyVM; holds nothing
        continue;
      }
      if (record?.state === 'running' && (await isOurProcess(record.pid, this.#marker(vmId)))) {
        try {
          await this.#o.networks.adopt(vmId, record.network, record.pid);
          this.#vms.set(vmId, record);
          adopted.push(vmId);
          continue;
        } catch (err) {
          this.#o.log.warn(
            { vmId, err: (err as Error).message },
            'cannot re-adopt the VM network; removing the VM',
          );
        }
      }
      for (const pid of await pidsWithMarker(this.#marker(vmId))) await terminate(pid, this.#marker(vmId));
      if (record && !record.networkReleased) await this.#o.networks.destroy(vmId, record.network);
      if (this.#o.vmCgroup) await removeCgroup(this.#o.vmCgroup.root, `${this.#o.vmCgroup.name}/${vmId}`);
      await rm(this.vmDir(vmId), { recursive: true, force: true });
      removed.push(vmId);
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
    const reaped = await this.#o.networks.reapOrphans(new Set(this.#live().map((vm) => vm.network.netns)));
    if (adopted.length > 0) this.#startMonitor();
    this.#o.log.info(
      { adopted: adopted.length, removed: removed.length, orphansKilled, netnsReaped: reaped.length },
      'adopted existing VMs',
    );
    return { adopted, removed, orphansKilled, netnsReaped: reaped.length };
  }
}

/**
 * The uid and gid a VM's QEMU runs as once started: 2^30 plus the index of its /30 in the IPv4
 * space. No host account uses it, and no two VMs on a node share it (one VM cannot signal or
 * ptrace another's QEMU).
 */
export function qemuIdentity(net: Pick<VMNetwork, 'hostIP'>): number {
  const n = net.hostIP.split('.').reduce((acc, b) => acc * 256 + Number(b), 0);
  return 2 ** 30 + Math.floor(n / 4);
}
