import type { TestProject } from 'vitest/node';
import { prepareLocalStack } from '../src/stack.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    localStack: {
      kubeconfigPath: string;
      kubectl: string;
      helm: string;
      images: Record<'operator' | 'mcp-gateway' | 'node-agent', string>;
    };
  }
}

/** Brings up the real single-node cluster once for the `node` project, with the images imported. */
export default async function setup(project: TestProject): Promise<void> {
  const t0 = Date.now();
  const stack = await prepareLocalStack({ log: (l) => process.stderr.write(`local cluster: ${l}\n`) });
  process.stderr.write(`local cluster: ready for tests in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  project.provide('localStack', {
    kubeconfigPath: stack.cluster.kubeconfigPath,
    kubectl: stack.cluster.kubectl,
    helm: stack.helm,
    images: stack.images,
  });
}
