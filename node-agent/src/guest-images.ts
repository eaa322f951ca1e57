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
 * Runs build.sh and returns the directory it prints last. Its warnings (a Debian mirror that
 * cannot be reached, so the package versions resolved last time key the images) go to `warn`.
 */
async function runBuild(script: string, args: string[], warn: (msg: string) => void): Promise<string> {
  const { stdout, stderr } = await run('bash', [script, ...args], { maxBuffer: 16 << 20 });
  for (const line of stderr.split('\n')) if (/^build\.sh: warning: /.test(line)) warn(line);
  return stdout.trim().split('\n').pop() ?? '';
}

/**
 * Finds the guest images, building missing ones with images/guest/build.sh (cached by a key of
 * the recipe and the package versions the Debian mirror would install now; see its README). A
 * per-runtime override (WAGGLE_IMAGE_<RUNTIME>) is an ext4 file used as given, or an OCI image
 * reference that `pull` turns into one (so the node builds nothing from a mirror).
 */
export async function resolveGuestImages(opts: {
  runtimes: VMSpec['runtime'][];
  overrides: Partial<Record<VMSpec['runtime'], string>>;
  log: (msg: string) => void;
  /** build.sh's warnings (default: `log`). */
  warn?: (msg: string) => void;
  /** images/guest/build.sh (default: the one beside this source tree). */
  buildScript?: string;
  /** An OCI reference → the ext4 root filesystem pulled from it. */
  pull?: (reference: string, runtime: VMSpec['runtime']) => Promise<string>;
}): Promise<GuestImages> {
  const build = async (args: string[]) => {
    opts.log(`resolving guest image: ${args.join(' ')}`);
    return runBuild(opts.buildScript ?? GUEST_BUILD_SCRIPT, args, opts.warn ?? opts.log);
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
 * Finds (or builds, cached by build.sh's key) the guest toolbox that OCI images get as `/.waggle`
 * (images/guest/build-toolbox.sh): `id` is that key, part of each image cache entry's name.
 */
export async function resolveGuestToolbox(opts: {
  log: (msg: string) => void;
  /** build.sh's warnings (default: `log`). */
  warn?: (msg: string) => void;
  buildScript?: string;
}): Promise<{ dir: string; id: string }> {
  opts.log('resolving guest image: toolbox');
  const out = await runBuild(opts.buildScript ?? GUEST_BUILD_SCRIPT, ['toolbox'], opts.warn ?? opts.log);
  return { dir: join(out, 'toolbox'), id: out.slice(out.lastIndexOf('-') + 1) };
}
