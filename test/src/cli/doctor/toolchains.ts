// The toolchains the harness builds once from Go modules: Kubernetes binaries and helm.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { helmPath } from '../../helm.ts';
import { kubeBinDir } from '../../kube-binaries.ts';
import { type Check, exists } from './check.ts';

const run = promisify(execFile);

export async function toolchainChecks(): Promise<Check[]> {
  const go = await run('go', ['env', 'GOVERSION']).then(
    (r) => r.stdout.trim(),
    () => '',
  );
  const goMinor = Number(/^go1\.(\d+)/.exec(go)?.[1] ?? 0);
  const binDir = await kubeBinDir();
  const kubeBuilt = await exists(join(binDir, 'kubelet'));
  return [
    {
      ok: kubeBuilt || goMinor >= 25,
      what: 'Kubernetes binaries',
      detail: kubeBuilt
        ? `built (${binDir})`
        : go
          ? `not built yet; ${go} will build them (~12 min, once)`
          : 'not built, and Go ≥ 1.25 is missing to build them',
    },
    {
      ok: (await exists(helmPath())) ? true : 'warn',
      what: 'helm',
      detail: 'built once from its Go module by setup.sh',
    },
  ];
}
