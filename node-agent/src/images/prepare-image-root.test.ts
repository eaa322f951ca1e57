import { chmod, lstat, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { prepareImageRoot } from './oci-image-store.ts';

let dir = '';
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('prepareImageRoot', () => {
  it('closes a world-writable root and makes the boot mount points plain directories of the image', async () => {
    dir = await mkdtemp(join(tmpdir(), 'waggle-root-'));
    const root = join(dir, 'rootfs');
    const outside = join(dir, 'outside');
    await mkdir(root);
    await chmod(root, 0o777); // mkdir's mode is masked by the umask
    await mkdir(outside);
    await symlink(outside, join(root, 'dev')); // a mount there would land outside the image
    await writeFile(join(root, 'tmp'), 'not a directory');
    await mkdir(join(root, 'run'));
    await chmod(join(root, 'run'), 0o700); // a directory already: kept as it is
    await prepareImageRoot(root);
    const mode = async (p: string) => (await lstat(p)).mode & 0o7777;
    expect(await mode(root)).toBe(0o755);
    expect((await stat(root)).uid).toBe(0);
    expect((await lstat(join(root, 'dev'))).isDirectory()).toBe(true);
    expect(await mode(join(root, 'tmp'))).toBe(0o1777);
    expect(await mode(join(root, 'proc'))).toBe(0o555);
    expect(await mode(join(root, 'sys'))).toBe(0o555);
    expect(await mode(join(root, 'run'))).toBe(0o700);
    expect((await lstat(outside)).isDirectory()).toBe(true); // the link's target was not touched
  });
});
