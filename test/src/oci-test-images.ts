import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, chmod, copyFile, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cacheRoot } from './cache.ts';

// Test images built here with umoci and pushed to a local registry with skopeo (nothing leaves
// the machine).
const run = promisify(execFile);

/** A layer: path → file content (mode 0755), a file to copy, a symlink, or `null` (a whiteout). */
export type Layer = Record<string, string | { from: string } | { link: string } | null>;

/** Builds an OCI image from layers in `<work>/layout` and returns its `layout:tag`. */
export async function buildImage(
  work: string,
  tag: string,
  layers: Layer[],
  opts: {
    architecture?: string;
    /** A last layer whose only entry is the root directory with this mode (e.g. 0o777). */
    rootMode?: number;
    /** The image config's Env (e.g. `PATH=/opt/tools/bin:/usr/bin:/bin`). */
    env?: string[];
  } = {},
): Promise<string> {
  const layout = join(work, 'layout');
  await run('umoci', ['init', '--layout', layout]).catch(() => undefined); // exists after the first
  await run('umoci', ['new', '--image', `${layout}:${tag}`]);
  let n = 0;
  for (const layer of layers) {
    for (const [path, content] of Object.entries(layer)) {
      if (content === null) {
        await run('umoci', ['insert', '--image', `${layout}:${tag}`, '--whiteout', path]);
        continue;
      }
      const src = join(work, `src-${tag}-${n++}`);
      await mkdir(join(src, '..'), { recursive: true });
      if (typeof content === 'string') {
        await writeFile(src, content);
        await chmod(src, 0o755);
      } else if ('from' in content) {
        await copyFile(content.from, src);
        await chmod(src, 0o755);
      } else {
        await symlink(content.link, src);
      }
      await run('umoci', ['insert', '--image', `${layout}:${tag}`, src, path]);
    }
  }
  if (opts.rootMode !== undefined) {
    const dir = await mkdtemp(join(work, 'root-mode-'));
    await chmod(dir, opts.rootMode);
    await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', dir, '-cf', `${dir}.tar`, '.']);
    await run('umoci', ['raw', 'add-layer', '--image', `${layout}:${tag}`, `${dir}.tar`]);
  }
  for (const e of opts.env ?? []) {
    await run('umoci', ['config', '--image', `${layout}:${tag}`, '--config.env', e]);
  }
  if (opts.architecture) {
    await run('umoci', ['config', '--image', `${layout}:${tag}`, '--architecture', opts.architecture]);
  }
  return `${layout}:${tag}`;
}

/** Pushes `layout:tag` to a registry over plain HTTP (`authFile`: a containers-auth file). */
export async function push(src: string, dest: string, authFile?: string) {
  await run('skopeo', [
    'copy',
    '--quiet',
    '--dest-tls-verify=false',
    ...(authFile ? ['--dest-authfile', authFile] : []),
    `oci:${src}`,
    `docker://${dest}`,
  ]);
}

/** The host's static busybox as /bin/busybox with these applets linked: an image with no libc. */
export function busyboxLayer(
  applets = ['sh', 'echo', 'cat', 'id', 'ls', 'sleep', 'touch', 'rm', 'mkdir', 'ln', 'mv', 'whoami'],
): Layer {
  return {
    '/bin/busybox': { from: '/bin/busybox' },
    ...Object.fromEntries(applets.map((a) => [`/bin/${a}`, { link: 'busybox' }])),
  };
}

const DEBIAN_SUITE = process.env.WAGGLE_GUEST_SUITE ?? 'trixie';

/**
 * A Debian image with `packages` preinstalled (mmdebstrap minbase from the Debian mirror, one
 * layer added with umoci), as an OCI layout `dir:1` cached in `<cache>/images/oci-<name>-<hash>`
 * (keyed by name, packages and suite; ~20 s to build). How a team would build its own image,
 * without a container engine or a base image from a registry.
 */
export async function ensureDebianTestImage(name: string, packages: string[]): Promise<string> {
  const key = createHash('sha256')
    .update(JSON.stringify([name, [...packages].sort(), DEBIAN_SUITE, 'v1']))
    .digest('hex')
    .slice(0, 12);
  const images = join(cacheRoot(), 'images');
  const dir = join(images, `oci-${name}-${key}`);
  const ref = `${join(dir, 'layout')}:1`;
  if (
    await access(join(dir, '.complete')).then(
      () => true,
      () => false,
    )
  )
    return ref;
  await mkdir(images, { recursive: true });
  const tmp = await mkdtemp(join(images, `.build-oci-${name}-`));
  try {
    const tar = join(tmp, 'root.tar');
    await run(
      'mmdebstrap',
      [
        '--variant=minbase',
        '--quiet',
        `--include=${packages.join(',')}`,
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/doc/* "$1"/usr/share/man/*',
        DEBIAN_SUITE,
        tar,
      ],
      { maxBuffer: 16 << 20 },
    ).catch((err: { stderr?: string; message: string }) => {
      throw new Error(
        `building test image ${name} with mmdebstrap failed (is a Debian mirror reachable? run test/scripts/setup.sh): ${err.stderr?.slice(-2000) ?? err.message}`,
      );
    });
    const layout = join(tmp, 'layout');
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', `${layout}:1`]);
    await run('umoci', ['raw', 'add-layer', '--image', `${layout}:1`, tar]);
    await run('umoci', [
      'config',
      '--image',
      `${layout}:1`,
      '--config.env',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    ]);
    await rm(tar);
    await writeFile(join(tmp, '.complete'), '');
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    return ref;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
