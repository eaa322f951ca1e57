// `pnpm cluster control-plane`: etcd + kube-apiserver on loopback until Ctrl-C.
import { startControlPlane } from '../../control-plane.ts';
import { type CliIO, expectNoArguments } from '../dispatch.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  const cp = await startControlPlane({ log: io.err });
  io.out(
    `kube-apiserver ${cp.serverVersion} at ${cp.server} (ready in ${(cp.startupMs / 1000).toFixed(1)} s)`,
  );
  io.out(`export KUBECONFIG=${cp.kubeconfigPath}`);
  io.out(`kubectl: ${cp.binaries.kubectl}`);
  io.out('Press Ctrl-C to stop.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  io.err('stopping control plane');
  await cp.stop();
  io.err(`stopped; removed ${cp.dir}`);
  return 0;
}
