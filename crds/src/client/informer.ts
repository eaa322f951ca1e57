import {
  type KubeConfig,
  type KubernetesObject,
  type ListPromise,
  makeInformer,
} from '@kubernetes/client-node';

/** The slice of a pino logger the informer uses. */
export interface InformerLogger {
  warn(fields: Record<string, unknown>, msg: string): void;
}

export type InformerEvent = 'add' | 'update' | 'delete';

/**
 * What the informer reads of an object: its name and namespace. Any Kubernetes object fits,
 * client-node's models and the zod-derived `WaggleEnvironment`/`WaggleNode` alike (whose
 * timestamps are the strings the API sends, not client-node's `Date`s).
 */
export interface InformerObject {
  metadata?: { name?: string; namespace?: string };
}

/** A list response: the items and the resourceVersion the watch continues from. */
export interface InformerList<T extends InformerObject> {
  metadata?: { resourceVersion?: string };
  items: T[];
}

export interface InformerOptions<T extends InformerObject> {
  name: string;
  kc: KubeConfig;
  /** API path to watch, e.g. /apis/waggle.dev/v1alpha1/waggleenvironments. */
  path: string;
  list: () => Promise<InformerList<T>>;
  onEvent: (type: InformerEvent, obj: T) => void;
  /** Re-deliver every cached object this often (level-based safety net). */
  resyncMs?: number;
  log: InformerLogger;
}

export interface Informer<T extends InformerObject> {
  /** Objects as last seen (namespace/name → object). */
  get(key: string): T | undefined;
  list(): readonly T[];
  /**
   * When the watch last came back after a failure (or first connected), by `performance.now()`;
   * undefined while it is down. Observers that judge objects by the absence of updates (node
   * heartbeats) must not count time during which updates could not arrive.
   */
  healthySince(): number | undefined;
  /** Resolves after the first full list. */
  synced: Promise<void>;
  stop(): Promise<void>;
}

export function keyOf(obj: InformerObject): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name}` : (obj.metadata?.name ?? '');
}

/**
 * A list+watch cache built on client-node's ListWatch, which relists on 410 Gone and reconnects
 * after watch timeouts; other watch errors stop it, so this restarts it with capped backoff.
 * ListWatch reports a failed list as an error event and still resolves `start()`, so `synced`
 * waits for a list that really succeeded (a leader must never reconcile from an empty cache).
 *
 * ListWatch holds the objects as client-node's `KubernetesObject`; they are the JSON the
 * apiserver sent for `path`, which is what `list` says it returns, so they are handed out as `T`
 * (the one place that trusts the wire: for Waggle's own kinds the CRD's schema is generated from
 * the same zod as `T`).
 */
export function startInformer<T extends InformerObject>(opts: InformerOptions<T>): Informer<T> {
  let listed = false;
  const list = async () => {
    const result = await opts.list();
    listed = true;
    return result;
  };
  const informer = makeInformer<KubernetesObject>(opts.kc, opts.path, list as ListPromise<KubernetesObject>);
  const typed = (obj: KubernetesObject) => obj as T;
  let stopped = false;
  let backoffMs = 200;
  let restartTimer: NodeJS.Timeout | undefined;
  let resolveSynced: () => void = () => undefined;
  const synced = new Promise<void>((r) => {
    resolveSynced = r;
  });

  let healthySince: number | undefined;
  const deliver = (type: InformerEvent) => (obj: KubernetesObject) => {
    backoffMs = 200;
    opts.onEvent(type, typed(obj));
  };
  informer.on('add', deliver('add'));
  informer.on('update', deliver('update'));
  informer.on('delete', deliver('delete'));
  informer.on('connect', () => {
    backoffMs = 200;
    // A routine watch reconnect keeps the mark; only a recovery from a failure moves it.
    healthySince ??= performance.now();
  });

  /** (Re)starts list+watch once; failures come back through `retry`. */
  const start = async (): Promise<void> => {
    restartTimer = undefined;
    if (stopped) return;
    try {
      await informer.start();
    } catch (err) {
      retry(err, 'start failed; retrying');
      return;
    }
    if (listed) resolveSynced();
  };
  const retry = (err: unknown, msg: string) => {
    if (stopped || restartTimer) return; // one restart pending at a time
    opts.log.warn(
      { informer: opts.name, err: (err as Error)?.message ?? String(err), retryInMs: backoffMs },
      msg,
    );
    restartTimer = setTimeout(() => void start(), backoffMs);
    // Capped low: one control plane coming back should be seen within seconds, not half a minute.
    backoffMs = Math.min(backoffMs * 2, 5_000);
  };
  informer.on('error', (err: unknown) => {
    healthySince = undefined;
    retry(err, listed ? 'watch failed; restarting' : 'list failed; retrying');
  });
  void start();

  const resync = opts.resyncMs
    ? setInterval(() => {
        for (const obj of informer.list()) opts.onEvent('update', typed(obj));
      }, opts.resyncMs)
    : undefined;
  resync?.unref();

  return {
    get: (key) => {
      const [a, b] = key.split('/');
      const obj = b === undefined ? informer.get(a as string) : informer.get(b, a);
      return obj && typed(obj);
    },
    list: () => informer.list() as T[],
    healthySince: () => healthySince,
    synced,
    async stop() {
      stopped = true;
      if (resync) clearInterval(resync);
      if (restartTimer) clearTimeout(restartTimer);
      await informer.stop();
    },
  };
}
