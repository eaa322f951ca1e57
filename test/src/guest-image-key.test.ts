import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The cache key of a guest image (images/guest/build.sh key ...): recipe + the exact package
// versions a mirror would install now. The mirror here is a local file: repository whose
// Packages index the test rewrites, so the mirror "publishes updates" on demand.
const run = promisify(execFile);
const GUEST = join(import.meta.dirname, '..', '..', 'images', 'guest');
const ARCH = (await run('dpkg', ['--print-architecture'])).stdout.trim();

let dir: string;
let mirror: string;
let clock = Math.floor(Date.now() / 1000);

async function listed(file: string): Promise<string[]> {
  return (await readFile(join(GUEST, file), 'utf8'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

/**
 * Writes the mirror's index: name → version (no dependencies); base-files is Essential and login
 * Priority: required, as in Debian (both in every minbase tree).
 */
async function publish(versions: Record<string, string>): Promise<void> {
  const stanzas = Object.entries(versions).map(([name, version]) =>
    [
      `Package: ${name}`,
      `Version: ${version}`,
      `Architecture: ${ARCH}`,
      ...(name === 'base-files' ? ['Essential: yes'] : []),
      ...(name === 'login' ? ['Priority: required'] : []),
      `Filename: pool/${name}_${version}_${ARCH}.deb`,
      'Size: 1',
      `SHA256: ${'0'.repeat(64)}`,
      `Description: ${name}`,
      '',
    ].join('\n'),
  );
  const packages = `${stanzas.join('\n')}\n`;
  const bin = join(mirror, 'dists', 'trixie', 'main', `binary-${ARCH}`);
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'Packages'), packages);
  const sha = createHash('sha256').update(packages).digest('hex');
  await writeFile(
    join(mirror, 'dists', 'trixie', 'Release'),
    `Suite: trixie\nCodename: trixie\nArchitectures: ${ARCH}\nComponents: main\nSHA256:\n ${sha} ${Buffer.byteLength(packages)} main/binary-${ARCH}/Packages\n`,
  );
  // apt's file: method compares modification times: each publication is later than the last.
  clock += 10;
  for (const f of [join(bin, 'Packages'), join(mirror, 'dists', 'trixie', 'Release')])
    await utimes(f, clock, clock);
}

async function key(cache: string, ...target: string[]): Promise<{ name: string; stderr: string }> {
  const { stdout, stderr } = await run('bash', [join(GUEST, 'build.sh'), 'key', ...target], {
    env: {
      ...process.env,
      WAGGLE_CACHE_DIR: cache,
      WAGGLE_GUEST_SOURCES: join(dir, 'sources.list'),
      WAGGLE_GUEST_APT_MAX_AGE: '0',
    },
  });
  return { name: stdout.trim(), stderr };
}

describe('guest image cache key', () => {
  let base: Record<string, string>;
  let cache: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'waggle-guest-key-'));
    mirror = join(dir, 'mirror');
    cache = join(dir, 'cache');
    await writeFile(join(dir, 'sources.list'), `deb [trusted=yes] file:${mirror} trixie main\n`);
    const names = [
      'base-files',
      'login',
      'apt',
      'unrelated',
      ...(await listed('rootfs/packages-common.txt')),
      ...(await listed('rootfs/packages-shell.txt')),
      ...(await listed('rootfs/packages-python.txt')),
      ...(await listed('kernel/packages.txt')),
    ];
    base = Object.fromEntries(names.map((n) => [n, '1.0-1']));
    await publish(base);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is the same for the same recipe and package versions', async () => {
    const first = await key(cache, 'rootfs', 'shell');
    expect(first.name).toMatch(/^rootfs-shell-[0-9a-f]{12}$/);
    await publish(base); // republished, nothing changed
    expect((await key(cache, 'rootfs', 'shell')).name).toBe(first.name);
    // A fresh apt state resolving the same versions agrees.
    expect((await key(join(dir, 'other-cache'), 'rootfs', 'shell')).name).toBe(first.name);
  });

  it('changes when a package of the image gets a new version, and only then', async () => {
    const before = {
      shell: (await key(cache, 'rootfs', 'shell')).name,
      python: (await key(cache, 'rootfs', 'python')).name,
      kernel: (await key(cache, 'kernel')).name,
    };
    await publish({ ...base, unrelated: '2.0-1' }); // not in any image
    expect((await key(cache, 'rootfs', 'shell')).name).toBe(before.shell);

    await publish({ ...base, 'python3-pip': '1.0-1+deb13u1' }); // only in the python image
    expect((await key(cache, 'rootfs', 'python')).name).not.toBe(before.python);
    expect((await key(cache, 'rootfs', 'shell')).name).toBe(before.shell);

    await publish({ ...base, 'base-files': '1.0-2' }); // Essential: in every minbase image
    expect((await key(cache, 'rootfs', 'shell')).name).not.toBe(before.shell);
    expect((await key(cache, 'kernel')).name).toBe(before.kernel);

    await publish({ ...base, login: '1.0-2' }); // Priority: required: minbase too
    expect((await key(cache, 'rootfs', 'shell')).name).not.toBe(before.shell);

    await publish({ ...base, 'linux-image-cloud-amd64': '1.1-1' });
    expect((await key(cache, 'kernel')).name).not.toBe(before.kernel);

    await publish(base); // back to the first versions: back to the first keys
    expect((await key(cache, 'rootfs', 'shell')).name).toBe(before.shell);
    expect((await key(cache, 'rootfs', 'python')).name).toBe(before.python);
  });

  it('falls back to the last resolved key, with a warning, when the mirror is unreachable', async () => {
    await publish({ ...base, tini: '2.0-1' });
    const online = await key(cache, 'rootfs', 'shell');
    await rename(mirror, `${mirror}.away`);
    try {
      const offline = await key(cache, 'rootfs', 'shell');
      expect(offline.name).toBe(online.name);
      expect(offline.stderr).toMatch(/warning: cannot resolve package versions from the mirror/);
      // Never resolved in this cache: nothing to fall back to, so no key (and no build).
      await expect(key(join(dir, 'empty-cache'), 'rootfs', 'shell')).rejects.toThrow(
        /none were resolved before/,
      );
    } finally {
      await rename(`${mirror}.away`, mirror);
    }
  });
});
