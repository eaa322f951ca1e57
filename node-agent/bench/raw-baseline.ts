// Shared by the benchmarks: percentile stats and the raw QEMU + SSH baseline (the same QEMU
// command line and images the node-agent uses, with no agent in between).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Accelerator } from '@waggle/crds';
import ssh2, { type Client } from 'ssh2';
import { runCommand } from '../src/guest/ssh-connections.ts';
import { generateEcdsaKeyPair, publicKeyBlob } from '../src/vm/keys.ts';
import { canBind } from '../src/vm/port-allocator.ts';
import { terminate } from '../src/vm/proc.ts';
import { buildQemuArgs } from '../src/vm/qemu-args.ts';
import { launchDetached } from '../src/vm/qemu-launch.ts';
import { waitForGuestReady } from '../src/vm/readiness.ts';
import type { GuestImages } from '../src/vm/vm-manager.ts';

const run = promisify(execFile);
export const now = () => performance.now();

export type Stats = { p50: number; p95: number; p99: number; min: number; max: number; n: number };
export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const rank = (p: number) =>
    s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    p50: r(rank(50)),
    p95: r(rank(95)),
    p99: r(rank(99)),
    min: r(s[0] ?? NaN),
    max: r(s[s.length - 1] ?? NaN),
    n: s.length,
  };
}

/** Collects named samples; `summary()` turns them into stats. */
export function sampler() {
  const samples: Record<string, number[]> = {};
  return {
    record(k: string, ms: number) {
      samples[k] ??= [];
      samples[k].push(ms);
    },
    async timed<T>(k: string, fn: () => Promise<T>): Promise<T> {
      const t = now();
      const r = await fn();
      this.record(k, now() - t);
      return r;
    },
    summary(): Record<string, Stats> {
      return Object.fromEntries(
        Object.entries(samples)
          .filter(([k]) => !k.startsWith('_'))
          .map(([k, v]) => [k, stats(v)]),
      );
    },
  };
}

export async function freeLoopbackPort(from: number): Promise<number> {
  for (let p = from; p < from + 100; p++) if (await canBind(p)) return p;
  throw new Error('no free port');
}

function connect(port: number, privateKey: string, hostPublicKey: string): Promise<Client> {
  const expected = publicKeyBlob(hostPublicKey);
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({
      host: '127.0.0.1',
      port,
      username: 'root',
      privateKey,
      readyTimeout: 15_000,
      hostVerifier: (k: Buffer) => k.equals(expected),
    });
  });
}

export interface RawVM {
  ms: number;
  client: Client;
  stop: () => Promise<void>;
}

/** Raw baseline: qemu-img overlay + bare QEMU (same command line) + wait for the guest's line + ssh2 + `true`. */
export async function rawBoot(opts: {
  port: number;
  images: GuestImages;
  accelerator: Accelerator;
  tscKHz?: number | undefined;
}): Promise<RawVM> {
  const dir = await mkdtemp(join(tmpdir(), 'waggle-bench-raw-'));
  const t0 = now();
  const client = generateEcdsaKeyPair('bench');
  const host = generateEcdsaKeyPair('bench-host');
  await writeFile(join(dir, 'ak'), `${client.publicKey}\n`, { mode: 0o600 });
  await writeFile(join(dir, 'hk'), host.privateKey, { mode: 0o600 });
  await run('qemu-img', [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-F',
    'raw',
    '-b',
    opts.images.rootfs.python as string,
    join(dir, 'o.qcow2'),
    '1G',
  ]);
  const args = buildQemuArgs({
    name: 'waggle-bench-raw',
    accelerator: opts.accelerator,
    cpus: 1,
    memoryMiB: 512,
    kernelPath: opts.images.kernel,
    initrdPath: opts.images.initrd,
    overlayPath: join(dir, 'o.qcow2'),
    sshForward: { host: '127.0.0.1', port: opts.port },
    egress: 'all',
    fwCfgFiles: { authorized_keys: join(dir, 'ak'), ssh_host_key: join(dir, 'hk') },
    serialLogPath: join(dir, 'serial.log'),
    qmpSocketPath: join(dir, 'qmp.sock'),
    pidFilePath: join(dir, 'qemu.pid'),
    ...(opts.tscKHz ? { tscKHz: opts.tscKHz } : {}),
  });
  const pid = await launchDetached({
    command: ['qemu-system-x86_64', ...args],
    pidFile: join(dir, 'qemu.pid'),
    logPath: join(dir, 'qemu.log'),
  });
  const ready = await waitForGuestReady({
    serialLogPath: join(dir, 'serial.log'),
    timeoutMs: 120_000,
    isAlive: () => true,
  });
  if (!ready.ready) throw new Error(`raw boot failed: ${ready.reason}`);
  const ssh = await connect(opts.port, client.privateKey, host.publicKey);
  await runCommand(ssh, 'true');
  const ms = now() - t0;
  return {
    ms,
    client: ssh,
    stop: async () => {
      ssh.end();
      await terminate(pid, dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
