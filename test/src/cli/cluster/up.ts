// `pnpm cluster up`: the local single-node cluster alone (no images, no chart); idempotent.
import { clusterUp } from '../../cluster/local-cluster.ts';
import { type CliIO, expectNoArguments } from '../dispatch.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  const c = await clusterUp({ log: io.err });
  io.out(`export KUBECONFIG=${c.kubeconfigPath}`);
  return 0;
}
