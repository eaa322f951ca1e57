import type { WaggleEnvironment } from '@waggle/crds';
import { ENV_ID_HEADER, type NodeAgentClient } from '@waggle/node-agent/client';
import { describe, expect, it } from 'vitest';
import type { ActivityRecorder } from './activity.ts';
import type { EnvironmentCache } from './environment-cache.ts';
import { SandboxService } from './sandbox.ts';

// What the gateway tells the node-agent with each call about an environment: its envId
// ("<namespace>/<name>") in the waggle-env-id header, the key the node-agent logs it under.
describe('SandboxService node-agent calls', () => {
  it('carry the environment’s envId header', async () => {
    const sent: Array<{ vmId: string; envId: string | null }> = [];
    const client = {
      writeFile: async (
        req: { vmId: string },
        opts?: { headers?: ConstructorParameters<typeof Headers>[0] },
      ) => {
        sent.push({ vmId: req.vmId, envId: new Headers(opts?.headers).get(ENV_ID_HEADER) });
        return { bytesWritten: 2n };
      },
    } as unknown as NodeAgentClient;
    const cache = {
      node: () => ({ status: { endpoint: 'http://agent:7443' } }),
    } as unknown as EnvironmentCache;
    const activity = { touch: () => undefined } as unknown as ActivityRecorder;
    const sandbox = new SandboxService(cache, activity, () => client);
    const env = {
      metadata: { name: 'env-1', namespace: 'team-a', uid: 'uid-1' },
      spec: { idleTimeout: '30m' },
      status: { nodeName: 'n1', vmId: 'uid-1', phase: 'Running' },
    } as unknown as WaggleEnvironment;

    expect(await sandbox.writeFile(env, '/tmp/x', new Uint8Array([1, 2]))).toBe(2);
    expect(sent).toEqual([{ vmId: 'uid-1', envId: 'team-a/env-1' }]);
  });
});
