import { readFile } from 'node:fs/promises';

/**
 * The host TSC rate in kHz. A TCG guest that has to calibrate its TSC against the emulated PIT
 * hangs at boot when the host is busy; passing the rate on the kernel command line avoids the
 * calibration (see LOCAL-CLUSTER.md, "Guest VMs under TCG").
 *
 * Sources, best first: the kernel's `tsc_freq_khz` (when exposed), then `cpu MHz` of
 * /proc/cpuinfo, which on x86 is the TSC-derived frequency the kernel detected.
 */
export async function readHostTscKHz(
  read: (path: string) => Promise<string> = (p) => readFile(p, 'utf8'),
): Promise<number> {
  const sysfs = await read('/sys/devices/system/cpu/cpu0/tsc_freq_khz').catch(() => '');
  const fromSysfs = Number.parseInt(sysfs.trim(), 10);
  if (Number.isFinite(fromSysfs) && fromSysfs > 0) return fromSysfs;
  const cpuinfo = await read('/proc/cpuinfo').catch(() => '');
  const match = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo);
  if (match?.[1]) return Math.round(Number(match[1]) * 1000);
  throw new Error(
    'cannot determine the host TSC rate (no tsc_freq_khz in sysfs, no "cpu MHz" in /proc/cpuinfo)',
  );
}

/** Kernel parameters that skip TSC calibration (Debian kernels use HZ=250). */
export function tscKernelArgs(khz: number, hz = 250): string[] {
  return [`tsc_early_khz=${khz}`, `lpj=${Math.round((khz * 1000) / hz)}`, 'no_timer_check'];
}
