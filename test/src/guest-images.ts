import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const BUILD = join(import.meta.dirname, '..', '..', 'images', 'guest', 'build.sh');

export type GuestRuntime = 'python' | 'node' | 'shell';

export interface BuiltGuestImages {
  kernel: string;
  initrd: string;
  rootfs: Partial<Record<GuestRuntime, string>>;
}

async function build(args: string[]): Promise<string> {
  try {
    const { stdout } = await run('bash', [BUILD, ...args], { maxBuffer: 16 << 20 });
    return stdout.trim().split('\n').pop() ?? '';
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(
      `guest image build "${args.join(' ')}" failed: ${e.message}\n${(e.stderr ?? '').slice(-2000)}\n` +
        'Install the host tools with `bash test/scripts/setup.sh` (mmdebstrap, qemu, busybox-static, kmod).',
    );
  }
}

/** Builds (or finds cached) the guest kernel, initramfs and the given runtimes' root filesystems. */
export async function ensureGuestImages(runtimes: GuestRuntime[]): Promise<BuiltGuestImages> {
  const kernelDir = await build(['kernel']);
  const rootfs: BuiltGuestImages['rootfs'] = {};
  for (const rt of runtimes) rootfs[rt] = join(await build(['rootfs', rt]), 'rootfs.ext4');
  return { kernel: join(kernelDir, 'vmlinuz'), initrd: join(kernelDir, 'initramfs.img'), rootfs };
}

/** Builds (or finds cached) the guest toolbox that OCI images get as `/.waggle`. */
export async function ensureGuestToolbox(): Promise<{ dir: string; id: string }> {
  const out = await build(['toolbox']);
  return { dir: join(out, 'toolbox'), id: out.split('-').pop() ?? '' };
}

/**
 * The OCI image layout of a runtime's built-in root filesystem (build.sh writes it beside
 * rootfs.ext4) as `<layout dir>:rootfs`, what `push` takes.
 */
export async function guestImageLayout(runtime: GuestRuntime): Promise<string> {
  return `${join(await build(['rootfs', runtime]), 'oci')}:rootfs`;
}
