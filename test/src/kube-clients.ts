import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { ENVIRONMENT_PLURAL, GROUP, VERSION } from '@waggle/crds';

/** The kubeconfig at `path` (in tests: `inject('kubeconfigPath')`, the global setup's admin). */
export function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

/** The API clients tests use, over one kubeconfig. */
export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  rbac: RbacAuthorizationV1Api;
  objects: KubernetesObjectApi;
}

/** Clients for the kubeconfig at `path`: `const { kc, core, custom } = kubeClients(inject('kubeconfigPath'))`. */
export function kubeClients(path: string): KubeClients {
  const kc = loadKubeConfig(path);
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    rbac: kc.makeApiClient(RbacAuthorizationV1Api),
    objects: KubernetesObjectApi.makeApiClient(kc),
  };
}

/** Group, version and plural of WaggleEnvironment, for CustomObjectsApi calls. */
export const ENVIRONMENTS = { group: GROUP, version: VERSION, plural: ENVIRONMENT_PLURAL } as const;
