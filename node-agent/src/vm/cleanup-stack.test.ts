import { describe, expect, it } from 'vitest';
import { CleanupStack } from './cleanup-stack.ts';

describe('CleanupStack', () => {
  it('undoes in reverse order and keeps going past failures', async () => {
    const done: string[] = [];
    const s = new CleanupStack();
    s.push('a', () => {
      done.push('a');
    });
    s.push('b', () => {
      throw new Error('boom');
    });
    s.push('c', async () => {
      done.push('c');
    });
    const errors = await s.unwind();
    expect(done).toEqual(['c', 'a']);
    expect(errors.map((e) => e.message)).toEqual(['cleanup "b" failed: boom']);
  });

  it('does nothing after release', async () => {
    const s = new CleanupStack();
    let ran = false;
    s.push('x', () => {
      ran = true;
    });
    s.release();
    await s.unwind();
    expect(ran).toBe(false);
  });
});
