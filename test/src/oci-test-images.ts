import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

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
  opts: { architecture?: string } = {},
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
  applets = ['sh', 'echo', 'cat', 'id', 'ls', 'sleep', 'touch', 'rm', 'mkdir', 'ln', 'whoami'],
): Layer {
  return {
    '/bin/busybox': { from: '/bin/busybox' },
    ...Object.fromEntries(applets.map((a) => [`/bin/${a}`, { link: 'busybox' }])),
  };
}
