// `pnpm cluster down`: stop the local cluster and remove everything it created on this machine.
import { clusterDown } from '../../cluster/local-cluster.ts';
import { type CliIO, expectNoArguments } from '../dispatch.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  await clusterDown({ log: io.err });
  return 0;
}
