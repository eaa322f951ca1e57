import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { joinCgroupsPrefix, moveToCgroup, removeCgroup } from './cgroup-escape.ts';

let dir: string;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('moveToCgroup (on a fake cgroup tree)', () => {
  it('moves the pid into every v1 hierarchy and seeds a new cpuset from its parent', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cg-'));
    for (const h of ['memory', 'pids', 'cpuset']) {
      await mkdir(join(dir, h), { recursive: true });
      await writeFile(join(dir, h, 'cgroup.procs'), '');
    }
    await writeFile(join(dir, 'cpuset', 'cpuset.cpus'), '0-1\n');
    await writeFile(join(dir, 'cpuset', 'cpuset.mems'), '0\n');
    await mkdir(join(dir, 'cpuset', 'waggle-vms'));
    await writeFile(join(dir, 'cpuset', 'waggle-vms', 'cpuset.cpus'), '');
    await writeFile(join(dir, 'cpuset', 'waggle-vms', 'cpuset.mems'), '');
    await writeFile(join(dir, 'not-a-hierarchy'), 'x');
    const moved = await moveToCgroup(4242, dir, 'waggle-vms');
    expect(moved.map((m) => m.slice(dir.length + 1)).sort()).toEqual(['cpuset', 'memory', 'pids']);
    expect(await readFile(join(dir, 'memory', 'waggle-vms', 'cgroup.procs'), 'utf8')).toBe('4242\n');
    expect(await readFile(join(dir, 'cpuset', 'waggle-vms', 'cpuset.cpus'), 'utf8')).toBe('0-1\n');
  });

  it('uses the root itself on a pure cgroup v2 host, and fails clearly without cgroups', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cg-'));
    await writeFile(join(dir, 'cgroup.procs'), '');
    expect(await moveToCgroup(7, dir, 'waggle-vms')).toEqual([dir]);
    await rm(join(dir, 'cgroup.procs'));
    await rm(join(dir, 'waggle-vms'), { recursive: true });
    await expect(moveToCgroup(7, dir, 'x')).rejects.toThrow(/no cgroup hierarchy found/);
  });
});

describe('per-VM cgroups with limits (on a fake cgroup tree)', () => {
  it('creates the nested VM cgroup, writes its limits before the pid joins, and removes it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cg-'));
    const files: Record<string, string[]> = {
      cpu: ['cpu.cfs_period_us', 'cpu.cfs_quota_us'],
      memory: ['memory.limit_in_bytes'],
      pids: ['pids.max'],
    };
    for (const [h, fs] of Object.entries(files)) {
      await mkdir(join(dir, h, 'waggle-vms', 'vm-1'), { recursive: true });
      await writeFile(join(dir, h, 'cgroup.procs'), '');
      for (const f of fs) await writeFile(join(dir, h, 'waggle-vms', 'vm-1', f), '');
    }
    await moveToCgroup(99, dir, 'waggle-vms/vm-1', { cpus: 2, memoryBytes: 768 << 20, pids: 256 });
    const at = (h: string, f: string) => readFile(join(dir, h, 'waggle-vms', 'vm-1', f), 'utf8');
    expect(await at('cpu', 'cpu.cfs_quota_us')).toBe('200000');
    expect(await at('cpu', 'cpu.cfs_period_us')).toBe('100000');
    expect(await at('memory', 'memory.limit_in_bytes')).toBe(String(768 << 20));
    expect(await at('pids', 'pids.max')).toBe('256');
    expect(await at('pids', 'cgroup.procs')).toBe('99\n');
    for (const h of Object.keys(files)) await rm(join(dir, h, 'waggle-vms', 'vm-1'), { recursive: true });
    for (const h of Object.keys(files)) await mkdir(join(dir, h, 'waggle-vms', 'vm-1'));
    await removeCgroup(dir, 'waggle-vms/vm-1');
    for (const h of Object.keys(files)) {
      await expect(readFile(join(dir, h, 'waggle-vms', 'vm-1', 'pids.max'))).rejects.toThrow();
    }
  });
});

describe('joinCgroupsPrefix', () => {
  it('puts the process into every cgroup before it runs the command', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'waggle-join-'));
    const files = [join(dir, 'a.procs'), join(dir, 'b.procs')];
    const { stdout } = await promisify(execFile)(joinCgroupsPrefix(files)[0] as string, [
      ...joinCgroupsPrefix(files).slice(1),
      '/bin/sh',
      '-c',
      'echo "ran as $$ with" "$@"',
      'x',
      'arg one',
    ]);
    const pid = stdout.match(/^ran as (\d+) with arg one\n$/)?.[1];
    expect(pid).toBeDefined();
    for (const f of files) expect(await readFile(f, 'utf8')).toBe(`${pid}\n`);
    await rm(dir, { recursive: true, force: true });
  });

  it('does not run the command when a cgroup cannot be joined', async () => {
    const cmd = joinCgroupsPrefix(['/nonexistent/cgroup.procs']);
    await expect(
      promisify(execFile)(cmd[0] as string, [...cmd.slice(1), '/bin/echo', 'must not run']),
    ).rejects.toMatchObject({ code: 1, stdout: '' });
  });
});
