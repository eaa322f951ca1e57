import { readFileSync } from 'node:fs';
import { fastify } from 'fastify';
import { describe, expect, it } from 'vitest';
import { readVersion, serveVersion } from './version.ts';

const PACKAGE = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

describe('operator version', () => {
  it('is its package.json version', () => {
    expect(readVersion()).toEqual({ component: 'operator', version: PACKAGE.version });
  });

  it('is answered at /version', async () => {
    const app = fastify();
    serveVersion(app, readVersion());
    const r = await app.inject({ method: 'GET', url: '/version' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ component: 'operator', version: PACKAGE.version });
    await app.close();
  });
});
