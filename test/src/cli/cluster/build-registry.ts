// `pnpm cluster build-registry`: the CNCF distribution registry built from its Go module.
import { ensureRegistry } from '../../oci-registry.ts';
import { type CliIO, expectNoArguments } from '../dispatch.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  io.err(`registry: ${await ensureRegistry({ log: io.err })}`);
  return 0;
}
