// `pnpm cluster status`: which local cluster components run; 0 only when all of them do.
import { clusterStatus } from '../../cluster/local-cluster.ts';
import { type CliIO, expectNoArguments } from '../dispatch.ts';

export async function run(args: string[], io: CliIO): Promise<number> {
  expectNoArguments(args);
  const st = await clusterStatus();
  if (st.components.length === 0) io.out('no local cluster');
  for (const c of st.components)
    io.out(`${c.running ? '●' : '○'} ${c.name}${c.pid ? ` (pid ${c.pid})` : ''}`);
  return st.components.length > 0 && st.components.every((c) => c.running) ? 0 : 1;
}
