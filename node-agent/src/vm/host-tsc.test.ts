import { describe, expect, it } from 'vitest';
import { readHostTscKHz, tscKernelArgs } from './host-tsc.ts';

const files = (m: Record<string, string>) => async (p: string) => {
  const v = m[p];
  if (v === undefined) throw new Error('ENOENT');
  return v;
};

describe('readHostTscKHz', () => {
  it('prefers the kernel tsc_freq_khz', async () => {
    expect(await readHostTscKHz(files({ '/sys/devices/system/cpu/cpu0/tsc_freq_khz': '2994000\n' }))).toBe(
      2994000,
    );
  });
  it('falls back to cpu MHz from /proc/cpuinfo', async () => {
    expect(await readHostTscKHz(files({ '/proc/cpuinfo': 'processor\t: 0\ncpu MHz\t\t: 2445.430\n' }))).toBe(
      2445430,
    );
  });
  it('says what is missing when neither exists', async () => {
    await expect(readHostTscKHz(files({}))).rejects.toThrow(/cannot determine the host TSC rate/);
  });
  it('derives loops-per-jiffy for HZ=250', () => {
    expect(tscKernelArgs(2_000_000)).toEqual(['tsc_early_khz=2000000', 'lpj=8000000', 'no_timer_check']);
  });
});
