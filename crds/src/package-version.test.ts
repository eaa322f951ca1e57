import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readPackageVersion, VersionUnknownError } from './package-version.ts';

describe('readPackageVersion', () => {
  it('reads the version of a package.json', () => {
    const dir = mkdtempSync(join(tmpdir(), 'waggle-version-'));
    writeFileSync(join(dir, 'package.json'), '{"name":"x","version":"1.2.3"}');
    expect(readPackageVersion(pathToFileURL(join(dir, 'package.json')))).toBe('1.2.3');
  });

  it('refuses a package.json without a version, or none at all', () => {
    const dir = mkdtempSync(join(tmpdir(), 'waggle-version-'));
    writeFileSync(join(dir, 'package.json'), '{"name":"x"}');
    expect(() => readPackageVersion(pathToFileURL(join(dir, 'package.json')))).toThrow(/names no version/);
    expect(() => readPackageVersion(pathToFileURL(join(dir, 'missing.json')))).toThrow(VersionUnknownError);
  });
});
