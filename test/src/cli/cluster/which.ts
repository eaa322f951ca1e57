// `pnpm cluster which <component>`: the cached path of one Kubernetes binary (built if needed).
import { ensureKubeBinaries } from '../../kube-binaries.ts';
import { type CliIO, UsageError } from '../dispatch.ts';
import { parseKubeComponents } from './kube-components.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  if (args.length !== 1) throw new UsageError('name exactly one component');
  const paths = await ensureKubeBinaries(parseKubeComponents(args), { log: io.err });
  io.out(Object.values(paths)[0] as string);
  return 0;
}
