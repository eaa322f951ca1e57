// `pnpm cluster build-kube [component…|all]`: Kubernetes binaries built from Go modules, cached.
import { ensureKubeBinaries } from '../../kube-binaries.ts';
import type { CliIO } from '../dispatch.ts';
import { parseKubeComponents } from './kube-components.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  const paths = await ensureKubeBinaries(parseKubeComponents(args), { log: io.err });
  for (const [name, path] of Object.entries(paths)) io.err(`${name}: ${path}`);
  return 0;
}
