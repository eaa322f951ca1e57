// The guest side: the kernel and root filesystems built into the cache, and the accelerator VMs
// will get, decided the way the node-agent decides it (a probe boot under KVM when possible).
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RUNTIMES } from '@waggle/crds';
import { detectAccelerator } from '@waggle/node-agent/host';
import { cacheRoot } from '../../cache.ts';
import { type Check, exists } from './check.ts';

/** The newest completed build in `dir` whose name starts with `prefix` (images/guest/build.sh layout). */
export async function newestBuild(dir: string, prefix: string): Promise<string | undefined> {
  let newest: { dir: string; mtime: number } | undefined;
  for (const entry of (await readdir(dir).catch(() => [] as string[])).filter((e) => e.startsWith(prefix))) {
    const st = await stat(join(dir, entry, '.complete')).catch(() => undefined);
    if (st && (!newest || st.mtimeMs > newest.mtime)) newest = { dir: join(dir, entry), mtime: st.mtimeMs };
  }
  return newest?.dir;
}

export async function guestChecks(): Promise<Check[]> {
  const images = join(cacheRoot(), 'images');
  const kernel = await newestBuild(images, 'kernel-');
  const checks: Check[] = [
    {
      ok: kernel ? true : 'warn',
      what: 'guest kernel + initramfs',
      detail: kernel ?? 'not built yet; setup.sh builds it (or bash images/guest/build.sh kernel)',
    },
  ];
  for (const rt of RUNTIMES) {
    const d = await newestBuild(images, `rootfs-${rt}-`);
    checks.push({
      ok: d ? true : 'warn',
      what: `${rt} root filesystem`,
      detail: d ?? `not built yet; setup.sh builds it (or bash images/guest/build.sh rootfs ${rt})`,
    });
  }
  checks.push(await acceleratorCheck(kernel));
  return checks;
}

const TCG_COST = 'VMs use TCG (software emulation) — they work, boots take seconds instead of ~100 ms';

async function acceleratorCheck(kernel: string | undefined): Promise<Check> {
  if (kernel) {
    const a = await detectAccelerator({
      requested: 'auto',
      kernel: join(kernel, 'vmlinuz'),
      initrd: join(kernel, 'initramfs.img'),
    });
    return a.accelerator === 'kvm'
      ? { ok: true, what: 'accelerator', detail: `KVM (${a.reason})` }
      : { ok: 'warn', what: 'accelerator', detail: `${a.reason}: ${TCG_COST}` };
  }
  // Without a kernel to probe-boot, what the host advertises.
  const kvm = await exists('/dev/kvm');
  const hw = /\b(vmx|svm)\b/.test(await readFile('/proc/cpuinfo', 'utf8').catch(() => ''));
  return kvm && hw
    ? { ok: true, what: 'accelerator', detail: '/dev/kvm with hardware virtualization: VMs use KVM' }
    : {
        ok: 'warn',
        what: 'accelerator',
        detail: `${kvm ? '/dev/kvm exists but the CPU reports no vmx/svm' : 'no /dev/kvm'}: ${TCG_COST}`,
      };
}
