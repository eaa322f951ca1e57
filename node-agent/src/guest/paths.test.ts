import { describe, expect, it } from 'vitest';
import { resolveGuestPath } from './paths.ts';

describe('resolveGuestPath', () => {
  it.each([
    ['data.csv', '/home/sandbox/data.csv'],
    ['out/result.json', '/home/sandbox/out/result.json'],
    ['/home/sandbox/a b/c', '/home/sandbox/a b/c'],
    ['/tmp/x', '/tmp/x'],
    ['./a/../b', '/home/sandbox/b'],
    ['/home/sandbox/', '/home/sandbox'],
  ])('resolves %j to %s', (input, want) => {
    expect(resolveGuestPath(input)).toBe(want);
  });

  it.each([
    '../../etc/passwd',
    '/etc/shadow',
    '/home/sandbox/../../root/.ssh',
    '/tmpfoo',
    '/',
    '/proc/1/environ',
  ])('rejects %j as outside the sandbox', (input) => {
    expect(() => resolveGuestPath(input)).toThrow(
      /outside the sandbox; use a path under \/home\/sandbox or \/tmp/,
    );
  });

  it('rejects empty paths and NUL bytes', () => {
    expect(() => resolveGuestPath('')).toThrow(/path is empty/);
    expect(() => resolveGuestPath('a\0b')).toThrow(/NUL/);
  });
});
