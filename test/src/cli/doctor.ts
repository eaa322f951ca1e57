// `pnpm waggle doctor [--image <rootfs.ext4> [--runtime python|node|shell]]`: what this machine
// has and lacks for `pnpm waggle up` and for running Waggle VMs, each prerequisite once; with
// --image, whether a custom guest image meets the guest contract.
import { parseArgs } from 'node:util';
import { RUNTIMES, type Runtime } from '@waggle/crds';
import { cacheRoot } from '../cache.ts';
import { clusterStatus } from '../cluster/local-cluster.ts';
import { type CliIO, UsageError } from './dispatch.ts';
import { type Check, failures, renderCheck } from './doctor/check.ts';
import { guestChecks } from './doctor/guest.ts';
import { diskChecks, hostChecks, portChecks } from './doctor/host.ts';
import { checkImage } from './doctor/image-contract.ts';
import { toolchainChecks } from './doctor/toolchains.ts';
import { MCP_PORT } from './mcp-forward.ts';

export interface DoctorOptions {
  image?: string;
  runtime: Runtime;
}

export function parseDoctorArgs(args: string[]): DoctorOptions {
  const { values } = parseArgs({
    args,
    options: { image: { type: 'string' }, runtime: { type: 'string', default: 'python' } },
  });
  const runtime = values.runtime as DoctorOptions['runtime'];
  if (!RUNTIMES.includes(runtime))
    throw new UsageError(`unknown runtime "${values.runtime}"; choose from: ${RUNTIMES.join(', ')}`);
  return { ...(values.image ? { image: values.image } : {}), runtime };
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const opts = parseDoctorArgs(args);
  const clusterRunning = (await clusterStatus()).components.some((c) => c.running);
  const checks: Check[] = [
    ...(await hostChecks()),
    ...(await toolchainChecks()),
    ...(await guestChecks()),
    ...(await portChecks(MCP_PORT, clusterRunning)),
    ...(await diskChecks(['/var/lib', cacheRoot()])),
    ...(opts.image ? await checkImage(opts.image, opts.runtime) : []),
  ];
  for (const c of checks) io.out(renderCheck(c));
  const failed = failures(checks);
  const before = opts.image ? '' : ' before pnpm waggle up';
  io.out(failed ? `\n${failed} problem(s) to fix${before}.` : '\nReady for pnpm waggle up.');
  return failed ? 1 : 0;
}
