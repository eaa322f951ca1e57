import { describe, expect, it } from 'vitest';
import { setCondition } from './conditions.ts';

describe('setCondition', () => {
  it('adds, then keeps the transition time while the status is unchanged', () => {
    const t1 = new Date('2026-11-24T10:00:00Z');
    const t2 = new Date('2026-11-24T10:05:00Z');
    const a = setCondition(
      undefined,
      { type: 'Ready', status: 'False', reason: 'Booting', message: 'm' },
      t1,
    );
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'Booting', message: 'still' }, t2);
    expect(b).toEqual([
      {
        type: 'Ready',
        status: 'False',
        reason: 'Booting',
        message: 'still',
        lastTransitionTime: '2026-11-24T10:00:00Z',
      },
    ]);
    const c = setCondition(b, { type: 'Ready', status: 'True', reason: 'Running', message: 'up' }, t2);
    expect(c[0]?.lastTransitionTime).toBe('2026-11-24T10:05:00Z');
  });

  it('keeps other conditions', () => {
    const a = setCondition(undefined, {
      type: 'Scheduled',
      status: 'True',
      reason: 'Scheduled',
      message: '',
    });
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'Booting', message: '' });
    expect(b.map((c) => c.type)).toEqual(['Scheduled', 'Ready']);
  });
});
