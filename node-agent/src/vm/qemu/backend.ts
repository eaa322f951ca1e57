import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, chown, link, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type { Accelerator } from '@waggle/crds';
import type { BackendInstance, DiskSource, LaunchOptions, VmBackend } from '../backend.ts';
import type { VMNetwork } from '../network/vm-network-record.ts';
import { isOurProcess, terminate } from '../proc.ts';
import { buildQemuArgs, type ConfineStyle, confineStyleOf } from '../qemu-args.ts';
import { launchDetached } from '../qemu-launch.ts';
import { vmPaths } from '../vm-paths.ts';
import { QmpClient } from './qmp.ts';

const run = promisify(execFile);

/** Name of the socket (inside the VM's chroot) QEMU streams its migration state to. */
const MIGRATE_SOCKET = 'migrate.sock';

export interface QemuMicrovmOptions {
  accelerator: Accelerator;
  kernel: string;
  initrd: string;
  tscKHz?: number;
  qemuBinary?: string;
  qemuImgBinary?: string;
  /** How long saving a VM's state may take. */
  saveTimeoutMs?: number;
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

/**
 * Connects to a VM's monitor. QEMU writes its pid file before it creates its monitor socket: a
 * socket that is not there yet (or not listening yet) is retried for `timeoutMs`.
 */
async function connectQmp(path: string, timeoutMs = 10_000): Promise<QmpClient> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      return await QmpClient.connect(path);
    } catch (err) {
      const missing = /ENOENT|ECONNREFUSED/.test((err as Error).message);
      if (!missing || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/**
 * QEMU `microvm`, confined (seccomp, own uid, chroot), one detached process per VM, controlled
 * over QMP on `<dir>/qmp.sock`. Saved states are QEMU migration streams: QEMU 7.2 has no `file:`
 * migration and its seccomp filter forbids `exec:`, so QEMU streams to a unix socket the agent
 * listens on inside the VM's chroot; restores read the file as `-incoming fd:3`.
 */
export class QemuMicrovmBackend implements VmBackend {
  readonly kind = 'qemu-microvm';
  readonly #o: Required<Omit<QemuMicrovmOptions, 'tscKHz'>> & Pick<QemuMicrovmOptions, 'tscKHz'>;
  #confineStyle?: Promise<ConfineStyle>;

  constructor(opts: QemuMicrovmOptions) {
    this.#o = {
      qemuBinary: 'qemu-system-x86_64',
      qemuImgBinary: 'qemu-img',
      saveTimeoutMs: 120_000,
      ...opts,
    };
  }

  /** Which options this QEMU drops privileges with: asked once (`-help`), then remembered. */
  #confinement(): Promise<ConfineStyle> {
    this.#confineStyle ??= run(this.#o.qemuBinary, ['-help'], { maxBuffer: 4 << 20 }).then(
      ({ stdout }) => confineStyleOf(stdout),
      (err: Error) => {
        this.#confineStyle = undefined;
        throw new Error(`cannot run ${this.#o.qemuBinary} -help: ${err.message}`);
      },
    );
    return this.#confineStyle;
  }

  marker(inst: Pick<BackendInstance, 'dir'>): string {
    return `${inst.dir}/`;
  }

  diskPath(inst: Pick<BackendInstance, 'dir'>): string {
    return vmPaths(inst.dir).overlay;
  }

  consolePath(inst: Pick<BackendInstance, 'dir'>): string {
    return vmPaths(inst.dir).serialLog;
  }

  async startupLog(inst: Pick<BackendInstance, 'dir'>): Promise<string> {
    return (await readFile(vmPaths(inst.dir).qemuLog, 'utf8').catch(() => ''))
      .trim()
      .split('\n')
      .slice(-3)
      .join('\n');
  }

  /**
   * Refuses a disk whose qcow2 backing chain names any file but the allowed ones (the runtime
   * images and snapshots' frozen disks). A VM's QEMU owns its overlay and could rewrite the
   * backing name in its header; the next launch (a resume, as root until QEMU drops to the VM's
   * uid) would then open another tenant's disk or any host file as this guest's.
   */
  async verifyDisk(inst: Pick<BackendInstance, 'dir'>, allowedBacking: ReadonlySet<string>): Promise<void> {
    const overlay = this.diskPath(inst);
    const { stdout } = await run(this.#o.qemuImgBinary, ['info', '-U', '--output=json', overlay], {
      maxBuffer: 1 << 20,
    }).catch((err: Error) => {
      throw new Error(`cannot read the disk ${overlay}: ${err.message}`);
    });
    const info = JSON.parse(stdout) as {
      format?: string;
      'full-backing-filename'?: string;
      'backing-filename'?: string;
    };
    const backing = info['full-backing-filename'] ?? info['backing-filename'];
    if (info.format !== 'qcow2' || !backing || !allowedBacking.has(backing)) {
      throw new Error(
        `the disk ${overlay} is not a qcow2 overlay of a runtime image or snapshot (format ${info.format}, backing ${JSON.stringify(backing ?? null)}); refusing to start it`,
      );
    }
  }

  async prepareDisk(inst: BackendInstance, source: DiskSource, sizeBytes: number): Promise<void> {
    const overlay = this.diskPath(inst);
    await run(this.#o.qemuImgBinary, [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      source.kind === 'image' ? 'raw' : 'qcow2',
      '-b',
      source.path,
      overlay,
      // A frozen disk already has the template's size; an overlay of it must not differ.
      ...(source.kind === 'image' ? [String(sizeBytes)] : []),
    ]);
  }

  async launch(inst: BackendInstance, opts: LaunchOptions): Promise<number> {
    const p = vmPaths(inst.dir);
    // QEMU chroots here once started; libslirp reads /etc/resolv.conf after that, lazily.
    await mkdir(join(p.chroot, 'etc'), { recursive: true, mode: 0o555 });
    await writeFile(join(p.chroot, 'etc', 'resolv.conf'), opts.resolvConf, { mode: 0o444 });
    await rm(p.pidFile, { force: true });
    // When QEMU saves a VM it reopens the disk by its path (read-only, to hand it over), after
    // it chrooted: the same file must be there under the same path. QEMU has it open already.
    const inChroot = join(p.chroot, p.overlay);
    await mkdir(dirname(inChroot), { recursive: true, mode: 0o555 });
    await link(p.overlay, inChroot).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    const id = qemuIdentity(inst.network);
    // ... and reopens it read-write after a restore: its own disk belongs to its own uid.
    await chown(p.overlay, id, id);
    await chmod(p.overlay, 0o600);
    const args = buildQemuArgs({
      name: `waggle-${inst.instanceId}`,
      accelerator: this.#o.accelerator,
      cpus: inst.template.cpus,
      memoryMiB: inst.template.memoryMiB,
      kernelPath: this.#o.kernel,
      initrdPath: this.#o.initrd,
      overlayPath: p.overlay,
      sshForward: { host: inst.network.nsIP, port: 22 },
      egress: inst.template.egress,
      confine: { uid: id, gid: id, chrootDir: p.chroot, style: await this.#confinement() },
      fwCfgFiles: opts.guestFiles,
      serialLogPath: p.serialLog,
      qmpSocketPath: p.qmp,
      pidFilePath: p.pidFile,
      ...(this.#o.tscKHz ? { tscKHz: this.#o.tscKHz } : {}),
      ...(opts.incomingState ? { incoming: 'fd:3' } : {}),
    });
    const state = opts.incomingState ? await open(opts.incomingState, 'r') : undefined;
    let pid: number;
    try {
      pid = await launchDetached({
        command: [...opts.execPrefix, this.#o.qemuBinary, ...args],
        pidFile: p.pidFile,
        logPath: p.qemuLog,
        ...(state ? { fd3: state.fd } : {}),
      });
    } finally {
      // QEMU has its own copy of the descriptor now.
      await state?.close();
    }
    if (opts.incomingState) {
      await this.#continueIncoming(p.qmp).catch(async (err: Error) => {
        await this.stop(inst, pid, 1_000);
        const said = await this.startupLog(inst);
        throw new Error(`${err.message}${said ? `: ${said}` : ''}`);
      });
    }
    return pid;
  }

  /**
   * Waits until QEMU has read the whole saved state, then lets the vCPUs run: a state saved
   * from a paused VM (as saveState pauses it) arrives paused.
   */
  async #continueIncoming(qmpPath: string): Promise<void> {
    const qmp = await connectQmp(qmpPath);
    try {
      const deadline = Date.now() + this.#o.saveTimeoutMs;
      while (true) {
        const st = await qmp.execute<{ status: string }>('query-status');
        if (st.status === 'running') return;
        if (st.status === 'paused' || st.status === 'postmigrate' || st.status === 'prelaunch') break;
        if (st.status !== 'inmigrate') throw new Error(`restoring the VM state ended in "${st.status}"`);
        if (Date.now() > deadline) throw new Error(`restoring took longer than ${this.#o.saveTimeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
      await qmp.execute('cont');
    } finally {
      qmp.close();
    }
  }

  async saveState(inst: BackendInstance, pid: number, statePath: string): Promise<{ bytes: number }> {
    const p = vmPaths(inst.dir);
    const sockPath = join(p.chroot, MIGRATE_SOCKET);
    const tmp = `${statePath}.tmp`;
    await rm(sockPath, { force: true });
    const id = qemuIdentity(inst.network);
    let received: Promise<void> | undefined;
    let conn: Socket | undefined;
    const server: Server = createServer({ allowHalfOpen: false }, (sock) => {
      if (conn) {
        sock.destroy(); // one stream only
        return;
      }
      conn = sock;
      // QEMU is not trusted to stop: the stream may not exceed the guest's memory plus a margin
      // for device state, and must end within the save deadline.
      received = pipeline(
        sock,
        capBytes(maxStateBytes(inst.template.memoryMiB), 'the saved VM state'),
        createWriteStream(tmp, { mode: 0o600 }),
        { signal: AbortSignal.timeout(this.#o.saveTimeoutMs) },
      );
      received.catch(() => undefined);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(sockPath, () => resolve());
    });
    const qmp = await connectQmp(p.qmp).catch((err: Error) => {
      server.close();
      throw err;
    });
    try {
      // QEMU runs as the VM's uid after start-up: only it may connect.
      await chown(sockPath, id, id);
      await chmod(sockPath, 0o600);
      // The default migration bandwidth cap (32 MiB/s) is for live migration over a network.
      await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 ** 3 });
      await qmp.execute('stop');
      await qmp.execute('migrate', { uri: `unix:/${MIGRATE_SOCKET}` });
      const deadline = Date.now() + this.#o.saveTimeoutMs;
      while (true) {
        const info = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
        if (info.status === 'completed') break;
        if (info.status === 'failed' || info.status === 'cancelled') {
          throw new Error(`saving the VM state ${info.status}: ${info['error-desc'] ?? 'no reason given'}`);
        }
        if (Date.now() > deadline) {
          await qmp.execute('migrate_cancel').catch(() => undefined);
          throw new Error(`saving the VM state took longer than ${this.#o.saveTimeoutMs} ms`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      if (!received) throw new Error('QEMU completed the migration without connecting');
      await received;
      await rename(tmp, statePath);
      await qmp.execute('quit').catch(() => undefined); // it may close the socket before answering
    } catch (err) {
      // The VM stays usable when saving failed: let its vCPUs run again.
      await qmp.execute('cont').catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    } finally {
      qmp.close();
      conn?.destroy();
      server.close();
      await rm(sockPath, { force: true });
    }
    await this.stop(inst, pid, 5_000);
    return { bytes: (await stat(statePath)).size };
  }

  async ensureRunning(inst: Pick<BackendInstance, 'dir'>): Promise<boolean> {
    const p = vmPaths(inst.dir);
    await rm(`${p.suspendState}.tmp`, { force: true }); // what the unfinished save wrote
    const qmp = await connectQmp(p.qmp, 2_000);
    const settled = async <R>(ask: () => Promise<R>, done: (r: R) => boolean, what: string): Promise<R> => {
      const deadline = Date.now() + 5_000;
      for (;;) {
        const r = await ask();
        if (done(r)) return r;
        if (Date.now() > deadline) throw new Error(`${what} did not settle within 5 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    try {
      // A save cut short may still be migrating into a socket nobody reads: end it, and wait
      // until it has ended (cancelling takes a moment; `cont` is refused meanwhile).
      const migrating = new Set(['setup', 'active', 'device', 'pre-switchover', 'cancelling']);
      const m = await qmp.execute<{ status?: string }>('query-migrate');
      if (m.status && migrating.has(m.status) && m.status !== 'cancelling')
        await qmp.execute('migrate_cancel');
      await settled(
        () => qmp.execute<{ status?: string }>('query-migrate'),
        (r) => !r.status || !migrating.has(r.status),
        'the unfinished save',
      );
      const st = await settled(
        () => qmp.execute<{ status: string }>('query-status'),
        (r) => r.status !== 'finish-migrate',
        'the VM',
      );
      if (st.status === 'running') return false;
      if (st.status !== 'paused' && st.status !== 'postmigrate')
        throw new Error(`the VM is "${st.status}", not paused by a save`);
      await qmp.execute('cont');
      return true;
    } finally {
      qmp.close();
    }
  }

  stop(inst: Pick<BackendInstance, 'dir'>, pid: number, graceMs?: number): Promise<void> {
    return terminate(pid, this.marker(inst), graceMs);
  }

  isAlive(inst: Pick<BackendInstance, 'dir'>, pid: number): Promise<boolean> {
    return isOurProcess(pid, this.marker(inst));
  }
}

/** The most bytes a saved state may take: the guest's memory and 64 MiB of device state. */
export const maxStateBytes = (memoryMiB: number) => (memoryMiB + 64) * 1024 * 1024;

/** A pass-through stream that fails once more than `limit` bytes went through it. */
function capBytes(limit: number, what: string): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > limit) done(new Error(`${what} exceeds ${limit} bytes; refused`));
      else done(null, chunk);
    },
  });
}
