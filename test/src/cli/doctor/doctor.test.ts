import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDoctorArgs } from '../doctor.ts';
import { failures, renderCheck } from './check.ts';
import { newestBuild } from './guest.ts';
import { HOST_TOOLS, locateTool, missingPackages } from './host.ts';

describe('doctor', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('names each missing apt package once, however many of its tools are missing', async () => {
    const present = new Set(['/usr/bin/containerd', 'qemu-img']);
    const missing = await missingPackages(HOST_TOOLS, async (t) => (present.has(t) ? t : undefined));
    expect(missing).toContain('e2fsprogs');
    expect(missing.filter((p) => p === 'e2fsprogs')).toHaveLength(1); // mkfs.ext4 and debugfs
    expect(missing.filter((p) => p === 'containerd')).toHaveLength(1); // ctr still missing
    expect(missing).not.toContain('qemu-utils');
  });

  it('finds a tool on PATH by name, and an absolute one only where it says', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'doctor-path-'));
    dirs.push(dir);
    await writeFile(join(dir, 'mytool'), '#!/bin/sh\n', { mode: 0o755 });
    await writeFile(join(dir, 'plain'), '', { mode: 0o644 });
    expect(await locateTool('mytool', dir)).toBe(join(dir, 'mytool'));
    expect(await locateTool('plain', dir)).toBeUndefined(); // not executable
    expect(await locateTool(join(dir, 'mytool'), '')).toBe(join(dir, 'mytool'));
    expect(await locateTool('/nonexistent/mytool', dir)).toBeUndefined();
  });

  it('picks the newest completed guest build and ignores unfinished ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'doctor-images-'));
    dirs.push(dir);
    for (const [name, complete, age] of [
      ['kernel-old', true, 100],
      ['kernel-new', true, 10],
      ['kernel-partial', false, 0],
    ] as const) {
      await mkdir(join(dir, name));
      if (complete) {
        await writeFile(join(dir, name, '.complete'), '');
        const t = new Date(Date.now() - age * 1000);
        await utimes(join(dir, name, '.complete'), t, t);
      }
    }
    expect(await newestBuild(dir, 'kernel-')).toBe(join(dir, 'kernel-new'));
    expect(await newestBuild(dir, 'rootfs-python-')).toBeUndefined();
    expect(await newestBuild(join(dir, 'absent'), 'kernel-')).toBeUndefined();
  });

  it('renders checks with a mark per outcome and counts only failures', () => {
    const checks = [
      { ok: true, what: 'a', detail: 'fine' },
      { ok: 'warn', what: 'b', detail: 'slow' },
      { ok: false, what: 'c', detail: '' },
    ] as const;
    expect(checks.map(renderCheck)).toEqual(['✓ a: fine', '! b: slow', '✗ c']);
    expect(failures(checks)).toBe(1);
  });

  it('defaults the image runtime to python', () => {
    expect(parseDoctorArgs([])).toEqual({ runtime: 'python' });
    expect(parseDoctorArgs(['--image', 'f.ext4', '--runtime', 'node'])).toEqual({
      image: 'f.ext4',
      runtime: 'node',
    });
  });
});
