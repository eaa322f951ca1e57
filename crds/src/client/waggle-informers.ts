import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { ENVIRONMENT_PLURAL, type WaggleEnvironment } from '../environment.ts';
import { GROUP, VERSION } from '../group.ts';
import { NODE_PLURAL, type WaggleNode } from '../node.ts';
import { POOL_PLURAL, type WagglePool } from '../pool.ts';
import { TEMPLATE_PLURAL, type WaggleTemplate } from '../template.ts';
import { type Informer, type InformerEvent, type InformerLogger, startInformer } from './informer.ts';

export interface WaggleInformerOptions<T> {
  kc: KubeConfig;
  /** Called on every add, update and delete (and on each resync); default: nothing. */
  onEvent?: (type: InformerEvent, obj: T) => void;
  /** Re-deliver every cached object this often (level-based safety net). */
  resyncMs?: number;
  log: InformerLogger;
  /** Shown in the informer's log lines; default: the resource's plural. */
  name?: string;
}

/** A cache of WaggleEnvironments in one namespace, or in all namespaces when none is given. */
export function environmentInformer(
  opts: WaggleInformerOptions<WaggleEnvironment> & { namespace?: string },
): Informer<WaggleEnvironment> {
  const api = opts.kc.makeApiClient(CustomObjectsApi);
  const ns = opts.namespace;
  return startInformer<WaggleEnvironment>({
    name: opts.name ?? ENVIRONMENT_PLURAL,
    kc: opts.kc,
    path: ns
      ? `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${ENVIRONMENT_PLURAL}`
      : `/apis/${GROUP}/${VERSION}/${ENVIRONMENT_PLURAL}`,
    list: () =>
      ns
        ? api.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: ns,
            plural: ENVIRONMENT_PLURAL,
          })
        : api.listCustomObjectForAllNamespaces({
            group: GROUP,
            version: VERSION,
            resourcePlural: ENVIRONMENT_PLURAL,
          }),
    onEvent: opts.onEvent ?? (() => undefined),
    resyncMs: opts.resyncMs,
    log: opts.log,
  });
}

/** A cache of every WaggleNode (they are cluster-scoped). */
export function nodeInformer(opts: WaggleInformerOptions<WaggleNode>): Informer<WaggleNode> {
  const api = opts.kc.makeApiClient(CustomObjectsApi);
  return startInformer<WaggleNode>({
    name: opts.name ?? NODE_PLURAL,
    kc: opts.kc,
    path: `/apis/${GROUP}/${VERSION}/${NODE_PLURAL}`,
    list: () => api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_PLURAL }),
    onEvent: opts.onEvent ?? (() => undefined),
    resyncMs: opts.resyncMs,
    log: opts.log,
  });
}

/** A cache of WagglePools in one namespace, or in all namespaces when none is given. */
export function poolInformer(
  opts: WaggleInformerOptions<WagglePool> & { namespace?: string },
): Informer<WagglePool> {
  const api = opts.kc.makeApiClient(CustomObjectsApi);
  const ns = opts.namespace;
  return startInformer<WagglePool>({
    name: opts.name ?? POOL_PLURAL,
    kc: opts.kc,
    path: ns
      ? `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${POOL_PLURAL}`
      : `/apis/${GROUP}/${VERSION}/${POOL_PLURAL}`,
    list: () =>
      ns
        ? api.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: ns,
            plural: POOL_PLURAL,
          })
        : api.listCustomObjectForAllNamespaces({
            group: GROUP,
            version: VERSION,
            resourcePlural: POOL_PLURAL,
          }),
    onEvent: opts.onEvent ?? (() => undefined),
    resyncMs: opts.resyncMs,
    log: opts.log,
  });
}

/** A cache of every WaggleTemplate (they are cluster-scoped). */
export function templateInformer(opts: WaggleInformerOptions<WaggleTemplate>): Informer<WaggleTemplate> {
  const api = opts.kc.makeApiClient(CustomObjectsApi);
  return startInformer<WaggleTemplate>({
    name: opts.name ?? TEMPLATE_PLURAL,
    kc: opts.kc,
    path: `/apis/${GROUP}/${VERSION}/${TEMPLATE_PLURAL}`,
    list: () => api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: TEMPLATE_PLURAL }),
    onEvent: opts.onEvent ?? (() => undefined),
    resyncMs: opts.resyncMs,
    log: opts.log,
  });
}
