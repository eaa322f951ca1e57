/**
 * The VM process is confined (docs/security.md): QEMU runs under its seccomp filter as a uid of
 * its own, chrooted into an empty directory, in a cgroup of its own with the VM's CPU, memory and
 * process limits; it cannot read another VM's files; a VM whose QEMU dies is noticed within
 * seconds and says why; a VM whose disk the node cannot hold is refused. Real QEMU under TCG.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureGuestImages } from '@waggle/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VMExitedError } from '../src/errors.ts';
import { execCode } from '../src/guest/exec.ts';
import type { GuestConnections } from '../src/guest/ssh-connections.ts';
import { readHostTscKHz } from '../src/vm/host-tsc.ts';
import type { VMNetworks } from '../src/vm/network/vm-network.ts';
import {
  type GuestImages,
  QEMU_MAX_PIDS,
  QEMU_OVERHEAD_MIB,
  qemuIdentity,
  VMManager,
  vmPaths,
} from '../src/vm/vm-manager.ts';
import { pythonSpec, testConnections, testLog, testNetworks } from './vm-fixtures.ts';

const run = promisify(execFile);
const CGROUP_ROOT = '/sys/fs/cgroup';
const CGROUP_NAME = `waggle-test-${process.pid}`;

let stateDir = '';
let images: GuestImages;
let tscKHz = 0;
let networks: VMNetworks;
let vms: VMManager;
let conns: GuestConnections;

const manager = (dir: string) =>
  new VMManager({
    stateDir: dir,
    images,
    networks,
    tscKHz,
    accelerator: 'tcg',
    log: testLog,
    bootTimeoutMs: 180_000,
    vmCgroup: { root: CGROUP_ROOT, name: CGROUP_NAME },
    snapshots: true,
  });

const spec = pythonSpec;

/** The VM's cgroup directory (named by its instance id) in one v1 hierarchy (or the v2 tree). */
async function cgroupDir(controller: string, instanceId: string): Promise<string> {
  const v1 = join(CGROUP_ROOT, controller, CGROUP_NAME, instanceId);
  return existsSync(v1) ? v1 : join(CGROUP_ROOT, CGROUP_NAME, instanceId);
}

beforeAll(async () => {
  images = await ensureGuestImages(['python']);
  tscKHz = await readHostTscKHz();
  stateDir = await mkdtemp(join(tmpdir(), 'waggle-confine-test-'));
  networks = await testNetworks('10.253.203.0/24');
  vms = manager(stateDir);
  await vms.adopt();
  conns = testConnections(vms);
  await Promise.all([vms.create(spec('conf-a')), vms.create(spec('conf-b'))]);
}, 900_000);

afterAll(async () => {
  conns?.closeAll();
  for (const vm of vms?.list() ?? []) await vms.destroyInstance(vm.instanceId);
  vms?.close();
  await networks?.removeHostTable();
  await run('find', [
    CGROUP_ROOT,
    '-depth',
    '-type',
    'd',
    '-name',
    `${CGROUP_NAME}*`,
    '-exec',
    'rmdir',
    '{}',
    ';',
  ]).catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
});

describe('QEMU runs confined', () => {
  it('under seccomp, as its own uid, chrooted into an empty directory, in a cgroup with the VM limits', async () => {
    const a = vms.get('conf-a');
    const b = vms.get('conf-b');
    const status = await readFile(`/proc/${a.pid}/status`, 'utf8');
    const uid = qemuIdentity(a.network);
    expect(status).toMatch(new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'));
    expect(status).toMatch(new RegExp(`^Gid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'));
    expect(status).toMatch(/^Groups:\s+\d*\s*$/m);
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    expect(status).toMatch(/^Seccomp:\s+2$/m);
    expect(qemuIdentity(b.network)).not.toBe(uid); // one VM cannot signal or ptrace another's QEMU
    expect(await readlink(`/proc/${a.pid}/root`)).toBe(vmPaths(vms.vmDir('conf-a')).chroot);

    const own = `${CGROUP_NAME}/${a.instanceId}`;
    const membership = await readFile(`/proc/${a.pid}/cgroup`, 'utf8');
    for (const c of ['cpu', 'memory', 'pids'])
      expect(membership).toMatch(new RegExp(`:${c}(,[a-z_]+)*:/${own}$`, 'm'));
    const read = async (c: string, f: string) =>
      (await readFile(join(await cgroupDir(c, a.instanceId), f), 'utf8')).trim();
    expect(await read('cpu', 'cpu.cfs_quota_us')).toBe('100000'); // 1 vCPU = one core's worth
    expect(Number(await read('memory', 'memory.limit_in_bytes'))).toBe(
      (512 + QEMU_OVERHEAD_MIB) * 1024 * 1024,
    );
    expect(await read('pids', 'pids.max')).toBe(String(QEMU_MAX_PIDS));
    // The VM runs, within those limits, and uses well under the memory limit.
    const r = await execCode(await conns.get('conf-a'), {
      code: 'print(sum(range(10**6)))',
      language: 'python',
      timeoutMs: 60_000,
      maxOutputBytes: 1024,
    });
    expect(r.stdout).toBe('499999500000\n');
    const usage = Number(await read('memory', 'memory.usage_in_bytes'));
    process.stderr.write(
      `vm-confinement: QEMU memory ${Math.round(usage / 2 ** 20)} MiB for a 512 MiB guest\n`,
    );
  });

  it('starts inside its cgroup: a restore charges the guest memory it loads to the VM, not to the agent', {
    timeout: 300_000,
  }, async () => {
    // conf-a's cold boot made the template's snapshot in the background.
    await vms.snapshotsSettled();
    const c = await vms.create(spec('conf-c'));
    expect(c.origin).toBe('restored');
    const dir = await cgroupDir('memory', c.instanceId);
    const usage = Number(
      (
        await readFile(
          join(dir, existsSync(join(dir, 'memory.current')) ? 'memory.current' : 'memory.usage_in_bytes'),
          'utf8',
        )
      ).trim(),
    );
    process.stderr.write(
      `vm-confinement: restored QEMU charged ${Math.round(usage / 2 ** 20)} MiB to its cgroup\n`,
    );
    // The saved state alone is ~100 MiB of guest memory; a QEMU moved into its cgroup only after
    // loading it would leave that charged to whoever started it (the agent's container).
    expect(usage).toBeGreaterThan(64 * 2 ** 20);
    await vms.destroy('conf-c');
  });

  it("cannot read another VM's files as its own uid", async () => {
    const uid = qemuIdentity(vms.get('conf-a').network);
    const other = vmPaths(vms.vmDir('conf-b'));
    const attempt = await run('setpriv', [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      'cat',
      other.clientKey,
    ]).then(
      () => 'read',
      (e: { stderr: string }) => e.stderr,
    );
    expect(attempt).toMatch(/Permission denied/);
    // …and the other VM's disk, console and QMP socket neither.
    for (const f of [other.overlay, other.serialLog, other.qmp]) {
      const r = await run('setpriv', [
        `--reuid=${uid}`,
        `--regid=${uid}`,
        '--clear-groups',
        'head',
        '-c1',
        f,
      ]).then(
        () => 'read',
        () => 'denied',
      );
      expect(r, f).toBe('denied');
    }
  });
});

describe('a VM whose QEMU dies', () => {
  it('is noticed within seconds: calls say it exited and why, its network and slot are freed', {
    timeout: 120_000,
  }, async () => {
    const vm = vms.get('conf-b');
    const netns = vm.network.netns;
    process.kill(vm.pid, 'SIGKILL');
    const t0 = Date.now();
    await expect.poll(() => vms.get('conf-b').state, { timeout: 10_000, interval: 100 }).toBe('exited');
    process.stderr.write(`vm-confinement: QEMU death noticed in ${Date.now() - t0} ms\n`);
    const exited = vms.get('conf-b');
    expect(exited.message).toMatch(/QEMU \(pid \d+\) exited while the VM was running/);
    expect(exited.message).toMatch(/last console lines/);
    await expect(vms.ensureAlive('conf-b')).rejects.toBeInstanceOf(VMExitedError);
    await expect(vms.ensureAlive('conf-b')).rejects.toThrow(/VM conf-b has exited: QEMU/);
    expect(existsSync(`/run/netns/${netns}`)).toBe(false);
    expect(existsSync(await cgroupDir('pids', exited.instanceId))).toBe(false);
    // The other VM is untouched.
    const r = await execCode(await conns.get('conf-a'), {
      code: 'print("still here")',
      language: 'python',
      timeoutMs: 60_000,
      maxOutputBytes: 1024,
    });
    expect(r.stdout).toBe('still here\n');
    // The record stays (GetVM explains) until DestroyVM, which removes it.
    expect(await vms.destroy('conf-b')).toBe(true);
    expect(() => vms.get('conf-b')).toThrow(/no VM "conf-b"/);
  });
});

describe('disk room', () => {
  it('refuses a VM whose disk the node cannot hold, saying how much is left', {
    timeout: 60_000,
  }, async () => {
    const small = await mkdtemp(join(tmpdir(), 'waggle-small-'));
    await run('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'tmpfs', small]);
    try {
      await mkdir(join(small, 'vms'));
      const tiny = manager(small);
      await expect(tiny.create(spec('conf-big'))).rejects.toThrow(
        /this node has \d+ MiB of disk left for VMs .*the VM asks for 1024 MiB/,
      );
      expect(tiny.list()).toEqual([]);
    } finally {
      await run('umount', [small]);
      await rm(small, { recursive: true, force: true });
    }
  });
});
