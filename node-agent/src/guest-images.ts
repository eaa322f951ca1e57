import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { GuestImages } from './vm/vm-manager.ts';
import type { VMSpec } from './vm/vm-record.ts';

const run = promisify(execFile);
export const GUEST_BUILD_SCRIPT =
  process.env.WAGGLE_GUEST_BUILD_SCRIPT ??
  join(import.meta.dirname, '..', '..', 'images', 'guest', 'build.sh');

/**
 * Finds the guest images, building missing ones with images/guest/build.sh (cached by recipe
 * hash). A per-runtime override (WAGGLE_IMAGE_<RUNTIME>) is an ext4 file used as given, or an OCI
 * image reference that `pull` turns into one (so the node builds nothing from a mirror).
 */
export async function resolveGuestImages(opts: {
  runtimes: VMSpec['runtime'][];
  overrides: Partial<Record<VMSpec['runtime'], string>>;
  log: (msg: string) => void;
  /** images/guest/build.sh (default: the one beside this source tree). */
  buildScript?: string;
  /** An OCI reference → the ext4 root filesystem pulled from it. */
  pull?: (reference: string, runtime: VMSpec['runtime']) => Promise<string>;
}): Promise<GuestImages> {
  const build = async (args: string[]) => {
    opts.log(`resolving guest image: ${args.join(' ')}`);
    const { stdout } = await run('bash', [opts.buildScript ?? GUEST_BUILD_SCRIPT, ...args], {
      maxBuffer: 16 << 20,
    });
    return stdout.trim().split('\n').pop() ?? '';
  };
  const kernelDir = await build(['kernel']);
  const rootfs: GuestImages['rootfs'] = {};
  for (const rt of opts.runtimes) {
    const override = opts.overrides[rt];
    if (override && !override.startsWith('/')) {
      if (!opts.pull)
        throw new Error(`WAGGLE_IMAGE_${rt.toUpperCase()}=${override}: OCI references need an image store`);
      opts.log(`pulling the ${rt} runtime's image ${override}`);
      rootfs[rt] = await opts.pull(override, rt).catch((err: Error) => {
        throw new Error(`WAGGLE_IMAGE_${rt.toUpperCase()}=${override}: ${err.message}`);
      });
    } else if (override) {
      await access(override).catch(() => {
        throw new Error(`WAGGLE_IMAGE_${rt.toUpperCase()}=${override}: no such file`);
      });
      rootfs[rt] = override;
    } else {
      rootfs[rt] = join(await build(['rootfs', rt]), 'rootfs.ext4');
    }
  }
  return { kernel: join(kernelDir, 'vmlinuz'), initrd: join(kernelDir, 'initramfs.img'), rootfs };
}

/**
 * Finds (or builds, cached by recipe hash) the guest toolbox that OCI images get as `/.waggle`
 * (images/guest/build-toolbox.sh): `id` is its recipe hash, part of each image cache entry's name.
 */
export async function resolveGuestToolbox(opts: {
  log: (msg: string) => void;
  buildScript?: string;
}): Promise<{ dir: string; id: string }> {
  opts.log('resolving guest image: toolbox');
  const { stdout } = await run('bash', [opts.buildScript ?? GUEST_BUILD_SCRIPT, 'toolbox'], {
    maxBuffer: 16 << 20,
  });
  const out = stdout.trim().split('\n').pop() ?? '';
  return { dir: join(out, 'toolbox'), id: out.slice(out.lastIndexOf('-') + 1) };
}
