import type { TestProject } from 'vitest/node';
import { clusterDown } from '../src/cluster/local-cluster.ts';
import { prepareLocalStack } from '../src/stack.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    localStack: {
      kubeconfigPath: string;
      kubectl: string;
      helm: string;
      images: Record<'operator' | 'mcp-gateway' | 'node-agent', string>;
      guestImages: Record<'python' | 'node' | 'shell', string>;
    };
  }
}

/**
 * Brings up the real single-node cluster once for the `node` project, with the images imported;
 * removes it after the project's last file, even when a test failed half-way (the last test,
 * `pnpm waggle down`, checks that removal itself).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const t0 = Date.now();
  const stack = await prepareLocalStack({ log: (l) => process.stderr.write(`local cluster: ${l}\n`) });
  process.stderr.write(`local cluster: ready for tests in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  project.provide('localStack', {
    kubeconfigPath: stack.cluster.kubeconfigPath,
    kubectl: stack.cluster.kubectl,
    helm: stack.helm,
    images: stack.images,
    guestImages: stack.guestImages,
  });
  return async () => {
    await clusterDown().catch(() => undefined);
  };
}
