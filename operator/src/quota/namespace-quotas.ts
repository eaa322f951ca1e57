import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1OwnerReference,
  type V1ResourceQuota,
  type V1RoleBinding,
} from '@kubernetes/client-node';
import { ENVIRONMENT_PLURAL, GROUP, VERSION, type WaggleEnvironment } from '@waggle/crds';
import {
  environmentInformer,
  type Informer,
  type InformerObject,
  startInformer,
} from '@waggle/crds/informer';
import type { Logger } from 'pino';
import { Controller, describeError } from '../runtime/controller.ts';

/** The object-count quota resource of WaggleEnvironments. */
export const ENVIRONMENT_COUNT = `count/${ENVIRONMENT_PLURAL}.${GROUP}`;
/** `app.kubernetes.io/managed-by` of the quotas this module owns. */
export const QUOTA_MANAGED_BY = 'waggle-operator';

export interface NamespaceQuotaOptions {
  kc: KubeConfig;
  log: Logger;
  /** Name of the ResourceQuota in each namespace (the chart's `<fullname>-environments`). */
  quotaName: string;
  /** The ClusterRole whose RoleBindings make a namespace Waggle's (the chart's `<fullname>-agent`). */
  agentClusterRole: string;
  /** WaggleEnvironments per namespace; 0 removes the quotas this module made. */
  limit: number;
  /** Watch one namespace only (default: all). */
  namespace?: string;
}

const ignoreNotFound = (err: unknown) => {
  if ((err as { code?: number }).code !== 404) throw err;
};

/**
 * Keeps a ResourceQuota of `limit` WaggleEnvironments in every namespace that holds one or has a
 * RoleBinding to the agent ClusterRole, so a token used with kubectl cannot create environments
 * without end (CEL cannot count objects). Run by the leader only. The quota's status is written
 * once when missing, so it is in force at once instead of after kube-controller-manager's next
 * quota sync (which recounts it from then on). A namespace bound to the agent ClusterRole has its
 * quota from the moment of the RoleBinding; one reached through other RBAC gets it when its first
 * environment appears (docs/adr/0011-admission-policy.md). Each quota is owned by the agent
 * ClusterRole: `helm uninstall` removes them with it.
 */
export class NamespaceQuotas {
  readonly #o: NamespaceQuotaOptions;
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #rbac: RbacAuthorizationV1Api;
  readonly #hard: string;
  #informers:
    | {
        bindings: Informer<V1RoleBinding>;
        quotas: Informer<V1ResourceQuota>;
        envs: Informer<WaggleEnvironment>;
      }
    | undefined;
  #controller: Controller | undefined;
  #owner: V1OwnerReference | undefined;
  #ownerLookedUp = false;

  constructor(o: NamespaceQuotaOptions) {
    this.#o = o;
    this.#core = o.kc.makeApiClient(CoreV1Api);
    this.#custom = o.kc.makeApiClient(CustomObjectsApi);
    this.#rbac = o.kc.makeApiClient(RbacAuthorizationV1Api);
    this.#hard = String(o.limit);
  }

  start(): void {
    const log = this.#o.log.child({ controller: 'namespace-quotas' });
    const controller = new Controller({
      name: 'namespace-quotas',
      workers: 1,
      reconcile: (ns) => this.#reconcile(ns),
      log,
    });
    this.#controller = controller;
    controller.start();
    const enqueue = (obj: InformerObject) => {
      if (obj.metadata?.namespace) controller.enqueue(obj.metadata.namespace);
    };
    const ns = this.#o.namespace;
    this.#informers = {
      bindings: startInformer<V1RoleBinding>({
        name: 'namespace-quotas/rolebindings',
        kc: this.#o.kc,
        path: ns
          ? `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`
          : '/apis/rbac.authorization.k8s.io/v1/rolebindings',
        list: () =>
          ns
            ? this.#rbac.listNamespacedRoleBinding({ namespace: ns })
            : this.#rbac.listRoleBindingForAllNamespaces(),
        onEvent: (_type, rb) => {
          if (this.#bindsAgentRole(rb)) enqueue(rb);
        },
        log,
      }),
      quotas: startInformer<V1ResourceQuota>({
        name: 'namespace-quotas/resourcequotas',
        kc: this.#o.kc,
        path: ns ? `/api/v1/namespaces/${ns}/resourcequotas` : '/api/v1/resourcequotas',
        list: () =>
          ns
            ? this.#core.listNamespacedResourceQuota({ namespace: ns })
            : this.#core.listResourceQuotaForAllNamespaces(),
        // Edited or deleted by someone else: put it back.
        onEvent: (_type, quota) => {
          if (quota.metadata?.name === this.#o.quotaName) enqueue(quota);
        },
        log,
      }),
      envs: environmentInformer({
        name: 'namespace-quotas/waggleenvironments',
        kc: this.#o.kc,
        namespace: ns,
        onEvent: (type, env) => {
          if (type === 'add') enqueue(env);
        },
        log,
      }),
    };
    log.info({ limit: this.#o.limit, quota: this.#o.quotaName }, 'keeping per-namespace environment quotas');
  }

  stop(): void {
    const informers = this.#informers;
    this.#informers = undefined;
    void this.#controller?.stop();
    this.#controller = undefined;
    for (const i of Object.values(informers ?? {})) void i.stop();
  }

  /** Resolves once every watch has listed (for tests). */
  async synced(): Promise<void> {
    await Promise.all(Object.values(this.#informers ?? {}).map((i) => i.synced));
  }

  #bindsAgentRole(rb: V1RoleBinding): boolean {
    return rb.roleRef?.kind === 'ClusterRole' && rb.roleRef.name === this.#o.agentClusterRole;
  }

  #wanted(ns: string): boolean {
    const inNs = (o: InformerObject) => o.metadata?.namespace === ns;
    return (
      (this.#informers?.envs.list().some(inNs) ?? false) ||
      (this.#informers?.bindings.list().some((rb) => inNs(rb) && this.#bindsAgentRole(rb)) ?? false)
    );
  }

  async #reconcile(ns: string): Promise<undefined> {
    const name = this.#o.quotaName;
    const current = this.#informers?.quotas.get(`${ns}/${name}`);
    const ours = current?.metadata?.labels?.['app.kubernetes.io/managed-by'] === QUOTA_MANAGED_BY;
    if (this.#o.limit <= 0) {
      if (current && ours) {
        await this.#core.deleteNamespacedResourceQuota({ name, namespace: ns }).catch(ignoreNotFound);
        this.#o.log.info({ namespace: ns, quota: name }, 'environment quota removed (limit 0)');
      }
      return undefined;
    }
    if (!this.#wanted(ns)) return undefined;

    let quota = current;
    if (!quota) {
      const owner = await this.#ownerReference();
      try {
        quota = await this.#core.createNamespacedResourceQuota({
          namespace: ns,
          body: {
            metadata: {
              name,
              namespace: ns,
              labels: {
                'app.kubernetes.io/managed-by': QUOTA_MANAGED_BY,
                'app.kubernetes.io/name': 'waggle',
              },
              ...(owner ? { ownerReferences: [owner] } : {}),
            },
            spec: { hard: { [ENVIRONMENT_COUNT]: this.#hard } },
          },
        });
        this.#o.log.info({ namespace: ns, quota: name, limit: this.#o.limit }, 'environment quota created');
      } catch (err) {
        if ((err as { code?: number }).code !== 409) throw err;
        quota = await this.#core.readNamespacedResourceQuota({ name, namespace: ns });
      }
    } else if (quota.spec?.hard?.[ENVIRONMENT_COUNT] !== this.#hard || !ours) {
      quota = await this.#core.patchNamespacedResourceQuota(
        {
          name,
          namespace: ns,
          body: {
            metadata: { labels: { 'app.kubernetes.io/managed-by': QUOTA_MANAGED_BY } },
            spec: { hard: { [ENVIRONMENT_COUNT]: this.#hard } },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      this.#o.log.info({ namespace: ns, quota: name, limit: this.#o.limit }, 'environment quota updated');
    }

    if (
      quota.status?.hard?.[ENVIRONMENT_COUNT] !== this.#hard ||
      quota.status?.used?.[ENVIRONMENT_COUNT] === undefined
    ) {
      // In force now: quota admission reads status.hard and status.used, which
      // kube-controller-manager would only fill at its next sync (and a control plane without it
      // never). Right after the CRD is installed its quota controller has no evaluator for
      // waggleenvironments yet: it copies `hard` but leaves `used` without the count, and every
      // create is refused ("status unknown for quota") until its next full resync, up to 5 min.
      // Its later syncs keep a `used` entry they cannot compute, so filling it once is enough.
      const used =
        quota.status?.used?.[ENVIRONMENT_COUNT] ??
        String(
          (
            (await this.#custom.listNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              plural: ENVIRONMENT_PLURAL,
              namespace: ns,
            })) as { items: unknown[] }
          ).items.length,
        );
      await this.#core.patchNamespacedResourceQuotaStatus(
        {
          name,
          namespace: ns,
          body: {
            metadata: { resourceVersion: quota.metadata?.resourceVersion },
            status: { hard: { [ENVIRONMENT_COUNT]: this.#hard }, used: { [ENVIRONMENT_COUNT]: used } },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
    return undefined;
  }

  /** The agent ClusterRole as owner (found once); without read access, quotas have no owner. */
  async #ownerReference(): Promise<V1OwnerReference | undefined> {
    if (this.#ownerLookedUp) return this.#owner;
    try {
      const role = await this.#rbac.readClusterRole({ name: this.#o.agentClusterRole });
      this.#owner = {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        name: this.#o.agentClusterRole,
        uid: role.metadata?.uid as string,
      };
      this.#ownerLookedUp = true;
    } catch (err) {
      this.#o.log.warn(
        { clusterRole: this.#o.agentClusterRole, err: describeError(err).message },
        'cannot read the agent ClusterRole; environment quotas get no owner (helm uninstall leaves them)',
      );
      this.#ownerLookedUp =
        (err as { code?: number }).code === 404 || (err as { code?: number }).code === 403;
    }
    return this.#owner;
  }
}
