import { readPackageVersion } from '@waggle/crds/package-version';
import type { FastifyInstance } from 'fastify';

export { VersionUnknownError } from '@waggle/crds/package-version';

/** What `/version` answers and the start line logs (`version`). */
export interface VersionInfo {
  component: 'operator';
  version: string;
}

/** This component's version, from its package.json (../package.json from source and from the image's bundle). */
export function readVersion(packageJson: URL = new URL('../package.json', import.meta.url)): VersionInfo {
  return { component: 'operator', version: readPackageVersion(packageJson) };
}

/** Serves `info` at `GET /version` (not a secret: the same as the image's tag). */
export function serveVersion(app: FastifyInstance, info: VersionInfo): void {
  app.get('/version', async () => info);
}
