// What the integration project's global setup provides to test files (see vitest-global-setup.ts).
import 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    kubeServer: string;
    kubeVersion: string;
  }
}
