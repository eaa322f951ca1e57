import { describe, expect, it } from 'vitest';
import { incompleteUtf8Tail, OutputRing } from './output-ring.ts';

const b = (s: string) => Buffer.from(s);
const text = (r: { stdout: Buffer; stderr: Buffer }) => ({
  stdout: r.stdout.toString(),
  stderr: r.stderr.toString(),
});

describe('OutputRing', () => {
  it('returns stdout and stderr from a cursor, in arrival order, and the next cursor', () => {
    const r = new OutputRing(100);
    r.push('stdout', b('one\n'));
    r.push('stderr', b('warn\n'));
    r.push('stdout', b('two\n'));
    const all = r.read(0, 100);
    expect(text(all)).toEqual({ stdout: 'one\ntwo\n', stderr: 'warn\n' });
    expect(all).toMatchObject({ nextSince: 13, dropped: 0, more: false });
    const rest = r.read(4, 100);
    expect(text(rest)).toEqual({ stdout: 'two\n', stderr: 'warn\n' });
    r.push('stdout', b('three\n'));
    const next = r.read(all.nextSince, 100);
    expect(text(next)).toEqual({ stdout: 'three\n', stderr: '' });
    expect(next.nextSince).toBe(19);
    // Nothing new: an empty read at the same cursor.
    expect(r.read(19, 100)).toMatchObject({ nextSince: 19, dropped: 0, more: false });
    expect(r.totals).toEqual({ stdout: 14, stderr: 5 });
  });

  it('drops the oldest bytes beyond its capacity and reports them to a reader behind', () => {
    const r = new OutputRing(10);
    r.push('stdout', b('0123456'));
    r.push('stderr', b('abcdef'));
    expect(r.keptBytes).toBe(10);
    expect(r.start).toBe(3);
    expect(r.end).toBe(13);
    const got = r.read(0, 100);
    expect(text(got)).toEqual({ stdout: '3456', stderr: 'abcdef' });
    expect(got).toMatchObject({ dropped: 3, nextSince: 13, more: false });
    // A reader already past the dropped part loses nothing.
    expect(r.read(5, 100)).toMatchObject({ dropped: 0 });
    expect(text(r.read(5, 100)).stdout).toBe('56');
    expect(r.totals).toEqual({ stdout: 7, stderr: 6 });
  });

  it('keeps only the newest capacity bytes of a chunk larger than the ring', () => {
    const r = new OutputRing(4);
    r.push('stdout', b('ab'));
    r.push('stderr', b('0123456789'));
    expect(text(r.read(0, 100))).toEqual({ stdout: '', stderr: '6789' });
    expect(r.read(0, 100)).toMatchObject({ dropped: 8, nextSince: 12 });
    expect(r.totals).toEqual({ stdout: 2, stderr: 10 });
  });

  it('stays within its capacity under a flood of tiny chunks', () => {
    const r = new OutputRing(1000);
    for (let i = 0; i < 100_000; i++) r.push(i % 7 === 0 ? 'stderr' : 'stdout', b('x'));
    expect(r.keptBytes).toBe(1000);
    const got = r.read(0, 1 << 20);
    expect(got.stdout.length + got.stderr.length).toBe(1000);
    expect(got).toMatchObject({ dropped: 99_000, nextSince: 100_000, more: false });
    expect(r.totals.stdout + r.totals.stderr).toBe(100_000);
  });

  it('pages with maxBytes: more until the cursor reaches the end', () => {
    const r = new OutputRing(100);
    r.push('stdout', b('aaaa'));
    r.push('stderr', b('bbbb'));
    const p1 = r.read(0, 3);
    expect(text(p1)).toEqual({ stdout: 'aaa', stderr: '' });
    expect(p1).toMatchObject({ nextSince: 3, more: true });
    const p2 = r.read(p1.nextSince, 3);
    expect(text(p2)).toEqual({ stdout: 'a', stderr: 'bb' });
    const p3 = r.read(p2.nextSince, 3);
    expect(text(p3)).toEqual({ stdout: '', stderr: 'bb' });
    expect(p3).toMatchObject({ nextSince: 8, more: false });
  });

  it('does not cut a UTF-8 character at a maxBytes boundary', () => {
    const r = new OutputRing(100);
    r.push('stdout', b('aé€'));
    const p1 = r.read(0, 2); // 'a' and the first byte of 'é'
    expect(text(p1).stdout).toBe('a');
    expect(p1.nextSince).toBe(1);
    const p2 = r.read(p1.nextSince, 4); // 'é' and two of the three bytes of '€'
    expect(text(p2).stdout).toBe('é');
    const p3 = r.read(p2.nextSince, 4);
    expect(text(p3).stdout).toBe('€');
    expect(p3.more).toBe(false);
  });

  it('refuses a cursor past the end', () => {
    const r = new OutputRing(10);
    r.push('stdout', b('abc'));
    expect(() => r.read(4, 10)).toThrow(/since 4 is past the end of the output \(3 bytes so far\)/);
  });
});

describe('incompleteUtf8Tail', () => {
  it('counts the bytes of a character cut at the end', () => {
    expect(incompleteUtf8Tail(b('abc'))).toBe(0);
    expect(incompleteUtf8Tail(b('é'))).toBe(0);
    expect(incompleteUtf8Tail(b('é').subarray(0, 1))).toBe(1);
    expect(incompleteUtf8Tail(b('a€').subarray(0, 3))).toBe(2);
    expect(incompleteUtf8Tail(b('😀').subarray(0, 3))).toBe(3);
    expect(incompleteUtf8Tail(Buffer.alloc(0))).toBe(0);
  });
});
