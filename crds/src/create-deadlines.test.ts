import { describe, expect, it } from 'vitest';
import { CREATE_DEADLINE_DEFAULTS } from './create-deadlines.ts';

describe('create deadline defaults', () => {
  it('nest: a guest boot times out before the CreateVM deadline and before the gateway stops waiting', () => {
    const d = CREATE_DEADLINE_DEFAULTS;
    expect(d.guestBootMs).toBeLessThan(d.createVMMs);
    expect(d.guestBootMs).toBeLessThan(d.createWaitMs);
  });
});
