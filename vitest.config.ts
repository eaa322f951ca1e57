import { defineConfig } from 'vitest/config';
import { NodeLifecycleLast } from './test/node/sequencer.ts';

// Four projects:
//  - unit: fast tests beside the code (`<pkg>/src/**/*.test.ts`), no external processes.
//  - integration: tests under `test/integration` and `<pkg>/test/`, run against a real
//    etcd + kube-apiserver started once by the global setup (see test/src/control-plane.ts).
//  - e2e: agents through the Helm-installed stack on the real single-node cluster (`test/e2e/`).
//  - node: tests under `test/node/` on the real single-node cluster (kubelet, containerd,
//    the Helm chart installed); run on its own after the others (`pnpm test:node`). Its files
//    share the node; the chart lifecycle, ending with `pnpm waggle down`, runs last.
export default defineConfig({
  test: {
    reporters: ['default', './test/src/summary-reporter.ts'],
    sequence: { sequencer: NodeLifecycleLast },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['{crds,operator,mcp-gateway,node-agent,test}/src/**/*.test.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: [
            'test/integration/**/*.test.ts',
            '{crds,operator,mcp-gateway,node-agent}/test/**/*.test.ts',
          ],
          globalSetup: ['./test/src/vitest-global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: ['./test/e2e/global-setup.ts'],
          testTimeout: 600_000,
          hookTimeout: 1_800_000,
          fileParallelism: false,
        },
      },
      {
        extends: true,
        test: {
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          globalSetup: ['./test/node/global-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 1_800_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
