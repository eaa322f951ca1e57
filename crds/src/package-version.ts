import { readFileSync } from 'node:fs';

/** A component's package.json could not be read or names no version. */
export class VersionUnknownError extends Error {
  override name = 'VersionUnknownError';
}

/**
 * The version in a component's package.json (read once, at its start). Components pass
 * `new URL('../package.json', import.meta.url)`: the same file from source (src/version.ts) and
 * from the image's esbuild bundle (dist/main.js, with package.json copied beside dist/).
 */
export function readPackageVersion(packageJson: URL): string {
  let version: unknown;
  try {
    version = (JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown }).version;
  } catch (err) {
    throw new VersionUnknownError(`cannot read ${packageJson.pathname}: ${(err as Error).message}`);
  }
  if (typeof version !== 'string' || !version)
    throw new VersionUnknownError(`${packageJson.pathname} names no version`);
  return version;
}
