import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, POOL_PLURAL, VERSION, type WagglePool, type WagglePoolStatus } from '@waggle/crds';

/** Writes a WagglePool's status; each returns the object as stored. */
export interface PoolWriter {
  updateStatus(pool: WagglePool, status: WagglePoolStatus): Promise<WagglePool>;
}

/**
 * Writes WagglePool status through the status subresource, with the resourceVersion read (a
 * stale view fails with 409 Conflict and is retried with fresh state).
 */
export class PoolStore implements PoolWriter {
  readonly #api: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
  }

  async updateStatus(pool: WagglePool, status: WagglePoolStatus): Promise<WagglePool> {
    return (await this.#api.replaceNamespacedCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      plural: POOL_PLURAL,
      namespace: pool.metadata.namespace as string,
      name: pool.metadata.name as string,
      body: { ...pool, status },
    })) as WagglePool;
  }
}
