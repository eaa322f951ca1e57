import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fastify } from 'fastify';
import { describe, expect, it } from 'vitest';
import { readVersion, serveVersion, VersionUnknownError } from './version.ts';

const PACKAGE = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

describe('mcp-gateway version', () => {
  it('is its package.json version', () => {
    expect(readVersion()).toEqual({ component: 'mcp-gateway', version: PACKAGE.version });
  });

  it('is answered at /version', async () => {
    const app = fastify();
    serveVersion(app, readVersion());
    const r = await app.inject({ method: 'GET', url: '/version' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ component: 'mcp-gateway', version: PACKAGE.version });
    await app.close();
  });

  it('refuses a package.json without a version', () => {
    const dir = mkdtempSync(join(tmpdir(), 'waggle-version-'));
    writeFileSync(join(dir, 'package.json'), '{"name":"x"}');
    expect(() => readVersion(pathToFileURL(join(dir, 'package.json')))).toThrow(VersionUnknownError);
    expect(() => readVersion(pathToFileURL(join(dir, 'missing.json')))).toThrow(VersionUnknownError);
  });
});
