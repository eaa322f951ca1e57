import type { CustomObjectsApi } from '@kubernetes/client-node';

const G = { group: 'waggle.dev', version: 'v1alpha1', plural: 'wagglenodes' };
/**
 * Registers a WaggleNode and heartbeats its status every second, as a node-agent would.
 * `clockSkewMs` shifts the times it writes (an agent whose clock is off).
 */
export async function registerFakeNode(
  custom: CustomObjectsApi,
  opts: {
    name: string;
    endpoint: string;
    vms: number;
    runtimes?: string[];
    /** status.ociImages: the node runs OCI images (spec.image). */
    ociImages?: boolean;
    clockSkewMs?: number;
    /** The warm pools it reports (status.pools), read at each heartbeat (FakeNodeAgent.poolStatus). */
    pools?: () => unknown[];
  },
): Promise<{ stopHeartbeat(): void; resumeHeartbeat(): void; remove(): Promise<void> }> {
  const now = () => new Date(Date.now() + (opts.clockSkewMs ?? 0)).toISOString().replace(/\.\d+Z$/, 'Z');
  await custom.createClusterCustomObject({
    ...G,
    body: { apiVersion: 'waggle.dev/v1alpha1', kind: 'WaggleNode', metadata: { name: opts.name } },
  });
  const beat = async () => {
    const current = (await custom.getClusterCustomObject({ ...G, name: opts.name })) as object;
    await custom.replaceClusterCustomObjectStatus({
      ...G,
      name: opts.name,
      body: {
        ...current,
        status: {
          endpoint: opts.endpoint,
          accelerator: 'tcg',
          capacity: { vms: opts.vms, cpus: 1000, memoryMiB: 1_000_000 },
          runtimes: opts.runtimes ?? ['python', 'node', 'shell'],
          ...(opts.ociImages ? { ociImages: true } : {}),
          ...(opts.pools ? { pools: opts.pools() } : {}),
          lastHeartbeatTime: now(),
          conditions: [
            {
              type: 'Ready',
              status: 'True',
              reason: 'AgentReady',
              message: 'fake',
              lastTransitionTime: now(),
            },
          ],
        },
      },
    });
  };
  // The operator may write this node's status between our read and our write (409 Conflict);
  // a real agent retries on its next heartbeat, the first one here retries at once.
  for (let attempt = 0; ; attempt++) {
    try {
      await beat();
      break;
    } catch (err) {
      if (attempt >= 5 || (err as { code?: number }).code !== 409) throw err;
    }
  }
  const start = () => setInterval(() => void beat().catch(() => undefined), 1_000);
  let timer = start();
  return {
    stopHeartbeat: () => clearInterval(timer),
    resumeHeartbeat: () => {
      clearInterval(timer);
      timer = start();
    },
    async remove() {
      clearInterval(timer);
      await custom.deleteClusterCustomObject({ ...G, name: opts.name }).catch(() => undefined);
    },
  };
}
