import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executableInRoot, findInRoot, resolveInRoot } from './rootfs-lookup.ts';

// A hostile image root beside a "host" file it must never reach.
let base = '';
let root = '';
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'rootfs-lookup-'));
  root = join(base, 'root');
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await writeFile(join(root, 'usr', 'bin', 'busybox'), 'x');
  await chmod(join(root, 'usr', 'bin', 'busybox'), 0o755);
  await writeFile(join(root, 'usr', 'bin', 'data'), 'x'); // not executable
  await symlink('usr/bin', join(root, 'bin')); // merged /usr, relative
  await symlink('/usr/bin/busybox', join(root, 'usr', 'bin', 'sh')); // absolute, inside the image
  await writeFile(join(base, 'host-python3'), 'host');
  await chmod(join(base, 'host-python3'), 0o755);
  await symlink('../../../host-python3', join(root, 'usr', 'bin', 'python3')); // escapes by ..
  await symlink(join(base, 'host-python3'), join(root, 'usr', 'bin', 'node')); // absolute host path
  await symlink('loop2', join(root, 'loop1'));
  await symlink('loop1', join(root, 'loop2'));
});
afterAll(() => rm(base, { recursive: true, force: true }));

describe('rootfs lookup inside an untrusted image', () => {
  it('follows relative and absolute links inside the root', async () => {
    expect(await executableInRoot(root, '/bin/sh')).toBe(join(root, 'usr', 'bin', 'busybox'));
    expect(await findInRoot(root, 'sh', ['/usr/local/bin', '/bin'])).toBe('/bin/sh');
  });

  it('never leaves the root: ".." stops at it and absolute targets are read inside it', async () => {
    // Both would reach `base/host-python3` if followed on the host; inside the root they are missing.
    expect(await resolveInRoot(root, '/usr/bin/python3')).toBeUndefined();
    expect(await executableInRoot(root, '/usr/bin/python3')).toBeUndefined();
    expect(await executableInRoot(root, '/usr/bin/node')).toBeUndefined();
  });

  it('gives up on loops, missing entries and non-executables', async () => {
    expect(await resolveInRoot(root, '/loop1')).toBeUndefined();
    expect(await resolveInRoot(root, '/nope/sh')).toBeUndefined();
    expect(await resolveInRoot(root, '/usr/bin/busybox/x')).toBeUndefined();
    expect(await executableInRoot(root, '/usr/bin/data')).toBeUndefined();
  });
});
