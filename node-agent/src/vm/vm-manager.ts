import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import {
  InvalidArgumentError,
  ResourceExhaustedError,
  VMBootError,
  VMConflictError,
  VMNotFoundError,
} from '../errors.ts';
import { moveToCgroup } from './cgroup-escape.ts';
import { CleanupStack } from './cleanup-stack.ts';
import { generateEcdsaKeyPair } from './keys.ts';
import type { VMNetwork, VMNetworks } from './network/vm-network.ts';
import { isOurProcess, pidsWithMarker, terminate } from './proc.ts';
import { type Accelerator, buildQemuArgs } from './qemu-args.ts';
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

  constructor(opts: VMManagerOptions) {
    this.#o = {
      qemuBinary: 'qemu-system-x86_64',
      qemuImgBinary: 'qemu-img',
      bootTimeoutMs: 90_000,
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
      if (this.#vms.size >= this.#o.maxVMs) {
        throw new ResourceExhaustedError(`this node already runs ${this.#vms.size} of ${this.#o.maxVMs} VMs`);
      }
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
        await moveToCgroup(pid, this.#o.vmCgroup.root, this.#o.vmCgroup.name).catch((err: Error) => {
          throw new VMBootError(`could not move QEMU out of the agent's cgroup: ${err.message}`);
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
      const net = vm?.network ?? (await this.#readRecord(vmId))?.network;
      if (net) await this.#o.networks.destroy(vmId, net);
      await rm(dir, { recursive: true, force: true });
      this.#vms.delete(vmId);
      if (vm) this.#o.log.info({ vmId }, 'vm destroyed');
      return vm !== undefined;
    });
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
      if (record) await this.#o.networks.destroy(vmId, record.network);
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
    const reaped = await this.#o.networks.reapOrphans(
      new Set([...this.#vms.values()].map((vm) => vm.network.netns)),
    );
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
