import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import {
  ENVIRONMENT_PLURAL,
  GROUP,
  VERSION,
  type WaggleEnvironment,
  type WaggleEnvironmentStatus,
} from '@waggle/crds';

export const FINALIZER = 'waggle.dev/vm-cleanup';

/**
 * Writes to WaggleEnvironments. Every write carries the resourceVersion the reconciler read, so a
 * stale view fails with 409 Conflict (and is retried with fresh state) instead of overwriting.
 */
export class EnvironmentStore {
  readonly #api: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
  }

  #coords(env: WaggleEnvironment) {
    return {
      group: GROUP,
      version: VERSION,
      plural: ENVIRONMENT_PLURAL,
      namespace: env.metadata.namespace as string,
      name: env.metadata.name as string,
    };
  }

  async setFinalizer(env: WaggleEnvironment, present: boolean): Promise<void> {
    const current = env.metadata.finalizers ?? [];
    const finalizers = present
      ? [...new Set([...current, FINALIZER])]
      : current.filter((f) => f !== FINALIZER);
    await this.#api.replaceNamespacedCustomObject({
      ...this.#coords(env),
      body: { ...env, metadata: { ...env.metadata, finalizers } },
    });
  }

  async updateStatus(env: WaggleEnvironment, status: WaggleEnvironmentStatus): Promise<void> {
    await this.#api.replaceNamespacedCustomObjectStatus({ ...this.#coords(env), body: { ...env, status } });
  }

  async delete(env: WaggleEnvironment): Promise<void> {
    try {
      await this.#api.deleteNamespacedCustomObject({ ...this.#coords(env) });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
  }
}
