import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { ENVIRONMENT_PLURAL, GROUP, VERSION } from '@waggle/crds';

/**
 * Removes a test namespace and every WaggleEnvironment in it. The envtest-style control plane
 * runs no kube-controller-manager, so deleting a namespace alone leaves it (and its objects)
 * Terminating forever — visible to every later test that watches all namespaces. Finalizers
 * are stripped because no operator may be left to run them.
 */
export async function deleteTestNamespace(kc: KubeConfig, namespace: string): Promise<void> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const coords = { group: GROUP, version: VERSION, namespace, plural: ENVIRONMENT_PLURAL };
  const list = (await custom.listNamespacedCustomObject(coords).catch(() => ({ items: [] }))) as {
    items: Array<{ metadata: { name: string; finalizers?: string[] } }>;
  };
  for (const env of list.items) {
    const name = env.metadata.name;
    if (env.metadata.finalizers?.length) {
      await custom
        .patchNamespacedCustomObject(
          { ...coords, name, body: [{ op: 'remove', path: '/metadata/finalizers' }] },
          setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
        )
        .catch(() => undefined);
    }
    await custom.deleteNamespacedCustomObject({ ...coords, name }).catch(() => undefined);
  }
  await kc
    .makeApiClient(CoreV1Api)
    .deleteNamespace({ name: namespace })
    .catch(() => undefined);
}
