// `pnpm cluster build-helm`: helm (both supported major versions) built from its Go module.
import { ensureHelm, HELM_VERSION, HELM3_VERSION } from '../../helm.ts';
import { type CliIO, expectNoArguments } from '../dispatch.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  for (const version of [HELM_VERSION, HELM3_VERSION])
    io.err(`helm ${version}: ${await ensureHelm({ version, log: io.err })}`);
  return 0;
}
