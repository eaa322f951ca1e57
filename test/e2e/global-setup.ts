import type { TestProject } from 'vitest/node';
import { installWaggle, prepareLocalStack } from '../src/stack.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    e2eKubeconfig: string;
  }
}

/** The Helm-installed stack on the real local node, for the end-to-end suite. */
export default async function setup(project: TestProject): Promise<void> {
  const t0 = Date.now();
  const log = (l: string) => process.stderr.write(`e2e: ${l}\n`);
  const stack = await prepareLocalStack({ log });
  await installWaggle(stack);
  log(`stack installed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  project.provide('e2eKubeconfig', stack.cluster.kubeconfigPath);
}
