import { defineConfig } from 'vitest/config';

// Two projects:
//  - unit: fast tests beside the code (`<pkg>/src/**/*.test.ts`), no external processes.
//  - integration: tests under `test/integration` and `<pkg>/test/`, run against a real
//    etcd + kube-apiserver started once by the global setup (see test/src/control-plane.ts).
export default defineConfig({
  test: {
    reporters: ['default', './test/src/summary-reporter.ts'],
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
    ],
  },
});
