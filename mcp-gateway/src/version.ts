import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

/** What `/version` answers and the start line logs (`version`). */
export interface VersionInfo {
  component: 'mcp-gateway';
  version: string;
}

/** package.json could not be read or names no version. */
export class VersionUnknownError extends Error {
  override name = 'VersionUnknownError';
}

/**
 * This component's version, from its package.json: read once, at start. The file is found the
 * same way from source (src/version.ts) and from the image's esbuild bundle (dist/main.js, with
 * the package.json copied beside dist/; see images/mcp-gateway/Dockerfile): `../package.json` from
 * this module's URL.
 */
export function readVersion(packageJson: URL = new URL('../package.json', import.meta.url)): VersionInfo {
  let version: unknown;
  try {
    version = (JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown }).version;
  } catch (err) {
    throw new VersionUnknownError(`cannot read ${packageJson.pathname}: ${(err as Error).message}`);
  }
  if (typeof version !== 'string' || !version)
    throw new VersionUnknownError(`${packageJson.pathname} names no version`);
  return { component: 'mcp-gateway', version };
}

/** Serves `info` at `GET /version` (not a secret: the same as the image's tag). */
export function serveVersion(app: FastifyInstance, info: VersionInfo): void {
  app.get('/version', async () => info);
}
