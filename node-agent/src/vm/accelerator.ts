import { execFile } from 'node:child_process';
import { access, constants, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Accelerator } from '@waggle/crds';

export interface AcceleratorChoice {
  accelerator: Accelerator;
  reason: string;
}

/**
 * Detects whether KVM can run our guests: /dev/kvm must be usable, the CPU must advertise
 * vmx/svm, and a short probe boot of the guest kernel under `-accel kvm` must get as far as
 * running the initramfs. Anything else falls back to TCG, with the reason.
 */
export async function detectAccelerator(opts: {
  requested: 'auto' | Accelerator;
  kernel: string;
  initrd: string;
  qemuBinary?: string;
  probeTimeoutMs?: number;
}): Promise<AcceleratorChoice> {
  if (opts.requested !== 'auto') return { accelerator: opts.requested, reason: 'configured (WAGGLE_ACCEL)' };
  const usable = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  if (!usable) return { accelerator: 'tcg', reason: '/dev/kvm is missing or not accessible' };
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  if (!/\b(vmx|svm)\b/.test(cpuinfo)) {
    return {
      accelerator: 'tcg',
      reason: '/dev/kvm exists but the CPU reports no vmx/svm (nested or paravirtual KVM)',
    };
  }
  const dir = await mkdtemp(join(tmpdir(), 'waggle-kvm-probe-'));
  try {
    const serial = join(dir, 'serial.log');
    const timeoutMs = opts.probeTimeoutMs ?? 8_000;
    await new Promise<void>((resolve) => {
      execFile(
        opts.qemuBinary ?? 'qemu-system-x86_64',
        [
          '-M',
          'microvm,x-option-roms=off,isa-serial=on,rtc=on',
          '-accel',
          'kvm',
          '-cpu',
          'host',
          '-m',
          '256M',
          '-nodefaults',
          '-no-user-config',
          '-nographic',
          '-no-reboot',
          '-display',
          'none',
          '-kernel',
          opts.kernel,
          '-initrd',
          opts.initrd,
          '-append',
          'console=ttyS0 panic=-1',
          '-serial',
          `file:${serial}`,
        ],
        { timeout: timeoutMs, killSignal: 'SIGKILL' },
        () => resolve(),
      );
    });
    const out = await readFile(serial, 'utf8').catch(() => '');
    if (/Run \/init as init process|initramfs:/.test(out))
      return { accelerator: 'kvm', reason: 'KVM probe boot reached the initramfs' };
    return {
      accelerator: 'tcg',
      reason: `KVM probe boot did not reach the initramfs within ${timeoutMs} ms`,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
