import { describe, expect, it } from 'vitest';
import { CappedBuffer } from './output-buffer.ts';

describe('CappedBuffer', () => {
  it('keeps the first cap bytes and counts all of them', () => {
    const b = new CappedBuffer(5);
    b.push(Buffer.from('abc'));
    b.push(Buffer.from('defgh'));
    b.push(Buffer.from('ij'));
    expect(b.text()).toBe('abcde');
    expect(b.totalBytes).toBe(10);
    expect(b.truncated).toBe(true);
  });
  it('is not truncated at exactly the cap', () => {
    const b = new CappedBuffer(3);
    b.push(Buffer.from('abc'));
    expect(b.truncated).toBe(false);
  });
});
