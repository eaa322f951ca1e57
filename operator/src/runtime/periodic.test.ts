import { describe, expect, it } from 'vitest';
import { startPeriodic } from './periodic.ts';

describe('startPeriodic', () => {
  it('never overlaps passes, reports failures and keeps going until stopped', async () => {
    let active = 0;
    let most = 0;
    let passes = 0;
    const errors: string[] = [];
    const stop = startPeriodic(
      async () => {
        active++;
        most = Math.max(most, active);
        passes++;
        await new Promise((r) => setTimeout(r, 35));
        active--;
        if (passes === 1) throw new Error('first pass failed');
      },
      10,
      (err) => errors.push(err.message),
      { immediately: true },
    );
    await new Promise((r) => setTimeout(r, 200));
    stop();
    const after = passes;
    await new Promise((r) => setTimeout(r, 60));
    expect(most).toBe(1);
    expect(passes).toBeGreaterThanOrEqual(3);
    expect(errors).toEqual(['first pass failed']);
    expect(passes - after).toBeLessThanOrEqual(1); // at most the pass already running
  });
});
