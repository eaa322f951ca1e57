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

const ignoreExists = (err: unknown) => {
  if ((err as { code?: number }).code !== 409) throw err;
};

/** What an agent needs on waggleenvironments (the gateway checks these by SubjectAccessReview). */
export const AGENT_VERBS = ['create', 'get', 'list', 'delete'] as const;

/**
 * A ServiceAccount `name` in `namespace`, and a Role and RoleBinding (both named `name`) granting
 * it `verbs` on waggleenvironments (an agent's by default; none: no RBAC at all), created if
 * missing. Returns a function that mints a 10-minute token for it with the given audiences.
 */
export async function agentServiceAccount(
  clients: Pick<KubeClients, 'core' | 'rbac'>,
  namespace: string,
  name: string,
  verbs: readonly string[] = AGENT_VERBS,
): Promise<(audiences?: string[]) => Promise<string>> {
  const { core, rbac } = clients;
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } }).catch(ignoreExists);
  if (verbs.length) {
    await rbac
      .createNamespacedRole({
        namespace,
        body: {
          metadata: { name },
          rules: [{ apiGroups: [GROUP], resources: [ENVIRONMENT_PLURAL], verbs: [...verbs] }],
        },
      })
      .catch(ignoreExists);
    await rbac
      .createNamespacedRoleBinding({
        namespace,
        body: {
          metadata: { name },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
          subjects: [{ kind: 'ServiceAccount', name, namespace }],
        },
      })
      .catch(ignoreExists);
  }
  return async (audiences = []) =>
    (
      await core.createNamespacedServiceAccountToken({
        name,
        namespace,
        body: { spec: { audiences, expirationSeconds: 600 } },
      })
    ).status?.token as string;
}
