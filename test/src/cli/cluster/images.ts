// `pnpm cluster images`: the operator, gateway and node-agent images built with podman.
import { ensureComponentImages } from '../../container-images.ts';
import { type CliIO, expectNoArguments } from '../dispatch.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  const refs = await ensureComponentImages({ log: io.err });
  for (const [c, ref] of Object.entries(refs)) io.out(`${c}: ${ref}`);
  return 0;
}
