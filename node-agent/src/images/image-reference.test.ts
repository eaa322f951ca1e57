import { describe, expect, it } from 'vitest';
import { formatImageReference, isImageAllowed, parseImageReference } from './image-reference.ts';

describe('parseImageReference', () => {
  it.each([
    ['python', 'docker.io/library/python:latest'],
    ['python:3.12-slim', 'docker.io/library/python:3.12-slim'],
    ['org/img:v1', 'docker.io/org/img:v1'],
    ['index.docker.io/org/img', 'docker.io/org/img:latest'],
    ['ghcr.io/org/team/img:v1', 'ghcr.io/org/team/img:v1'],
    ['127.0.0.1:5000/waggle/py:1', '127.0.0.1:5000/waggle/py:1'],
    ['localhost/img', 'localhost/img:latest'],
    ['[::1]:5000/img:x', '[::1]:5000/img:x'],
    [`ghcr.io/o/i@sha256:${'a'.repeat(64)}`, `ghcr.io/o/i@sha256:${'a'.repeat(64)}`],
    [`ghcr.io/o/i:v2@sha256:${'b'.repeat(64)}`, `ghcr.io/o/i:v2@sha256:${'b'.repeat(64)}`],
  ])('reads %s as %s', (input, want) => {
    expect(formatImageReference(parseImageReference(input))).toBe(want);
  });

  it.each([
    ['', /length/],
    ['Python', /lower-case/],
    ['img@sha256:abc', /not a sha256 digest/],
    ['img:bad tag', /whitespace/],
    ['img:-x', /not a valid tag/],
    ['ghcr.io/org//img', /component ""/],
    ['a/../b', /component "\.\."/],
    ['ghcr.io:99999999/x', /registry host/],
    ['x'.repeat(500), /length/],
  ])('refuses %j saying why', (input, why) => {
    expect(() => parseImageReference(input)).toThrow(why);
  });
});

describe('isImageAllowed', () => {
  const ref = (s: string) => parseImageReference(s);
  it('admits by registry, by repository prefix at path boundaries, and by "*"', () => {
    expect(isImageAllowed(ref('ghcr.io/org/py:1'), ['ghcr.io'])).toBe(true);
    expect(isImageAllowed(ref('ghcr.io/org/py:1'), ['ghcr.io/org'])).toBe(true);
    expect(isImageAllowed(ref('ghcr.io/organisation/py:1'), ['ghcr.io/org'])).toBe(false);
    expect(isImageAllowed(ref('ghcr.io.evil.com/org/py'), ['ghcr.io'])).toBe(false);
    expect(isImageAllowed(ref('python:3.12'), ['python'])).toBe(true);
    expect(isImageAllowed(ref('python:3.12'), ['docker.io/library/python'])).toBe(true);
    expect(isImageAllowed(ref('pythonista'), ['python'])).toBe(false);
    expect(isImageAllowed(ref('127.0.0.1:5000/a/b'), ['127.0.0.1:5000'])).toBe(true);
    expect(isImageAllowed(ref('anything/at:all'), ['*'])).toBe(true);
    expect(isImageAllowed(ref('ghcr.io/org/py'), [])).toBe(false);
  });
});
