import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureKubeBinaries } from './kube-binaries.ts';

const run = promisify(execFile);
const CRDS = join(import.meta.dirname, '..', '..', 'crds');

/** Applies Waggle's CRDs (server-side) and waits until the apiserver serves them. */
export async function applyCRDs(kubeconfigPath: string): Promise<void> {
  const { kubectl } = await ensureKubeBinaries(['kubectl']);
  const env = { ...process.env, KUBECONFIG: kubeconfigPath };
  await run(
    kubectl,
    [
      'apply',
      '--server-side',
      '-f',
      join(CRDS, 'waggle.dev_waggleenvironments.yaml'),
      '-f',
      join(CRDS, 'waggle.dev_wagglenodes.yaml'),
      '-f',
      join(CRDS, 'waggle.dev_wagglepools.yaml'),
      '-f',
      join(CRDS, 'waggle.dev_waggletemplates.yaml'),
    ],
    { env },
  );
  await run(
    kubectl,
    [
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/waggleenvironments.waggle.dev',
      'crd/wagglenodes.waggle.dev',
      'crd/wagglepools.waggle.dev',
      'crd/waggletemplates.waggle.dev',
    ],
    { env },
  );
}
