import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import {
  ENVIRONMENT_FINALIZER,
  ENVIRONMENT_PLURAL,
  GROUP,
  VERSION,
  type WaggleEnvironment,
  type WaggleEnvironmentStatus,
} from '@waggle/crds';

import type { EnvironmentWriter } from './ports.ts';

export const FINALIZER = ENVIRONMENT_FINALIZER;

/**
 * Writes to WaggleEnvironments. Every write carries the resourceVersion the reconciler read, so a
 * stale view fails with 409 Conflict (and is retried with fresh state) instead of overwriting.
 */
export class EnvironmentStore implements EnvironmentWriter {
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

  async setFinalizer(env: WaggleEnvironment, present: boolean): Promise<WaggleEnvironment> {
    const current = env.metadata.finalizers ?? [];
    const finalizers = present
      ? [...new Set([...current, FINALIZER])]
      : current.filter((f) => f !== FINALIZER);
    return (await this.#api.replaceNamespacedCustomObject({
      ...this.#coords(env),
      body: { ...env, metadata: { ...env.metadata, finalizers } },
    })) as WaggleEnvironment;
  }

  async updateStatus(env: WaggleEnvironment, status: WaggleEnvironmentStatus): Promise<WaggleEnvironment> {
    return (await this.#api.replaceNamespacedCustomObjectStatus({
      ...this.#coords(env),
      body: { ...env, status },
    })) as WaggleEnvironment;
  }

  async delete(env: WaggleEnvironment): Promise<void> {
    try {
      await this.#api.deleteNamespacedCustomObject({ ...this.#coords(env) });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
  }
}
