import type { KubeConfig } from '@kubernetes/client-node';
import type { WaggleEnvironment, WaggleNode } from '@waggle/crds';
import { environmentInformer, type Informer, type InformerEvent, nodeInformer } from '@waggle/crds/informer';
import type { Logger } from 'pino';

type Listener = (type: InformerEvent, env: WaggleEnvironment) => void;

/**
 * Watch-fed caches of WaggleEnvironments and WaggleNodes. The data path (execute, files) reads
 * routing from here instead of asking the apiserver on every call; waiters get every change of
 * one environment (create_environment waits for Ready this way).
 */
export class EnvironmentCache {
  readonly #envs: Informer<WaggleEnvironment>;
  readonly #nodes: Informer<WaggleNode>;
  readonly #listeners = new Map<string, Set<Listener>>();

  constructor(kc: KubeConfig, log: Logger, opts: { namespace?: string } = {}) {
    this.#envs = environmentInformer({
      kc,
      namespace: opts.namespace,
      onEvent: (type, env) => {
        const key = `${env.metadata.namespace}/${env.metadata.name}`;
        for (const l of this.#listeners.get(key) ?? []) l(type, env);
      },
      log,
    });
    this.#nodes = nodeInformer({ kc, log });
  }

  /** Resolves once both caches hold a full list. */
  get synced(): Promise<void> {
    return Promise.all([this.#envs.synced, this.#nodes.synced]).then(() => undefined);
  }

  get(namespace: string, name: string): WaggleEnvironment | undefined {
    return this.#envs.get(`${namespace}/${name}`);
  }

  list(namespace: string): WaggleEnvironment[] {
    return this.#envs.list().filter((e) => e.metadata.namespace === namespace);
  }

  /** Every environment the gateway watches (all namespaces it may see). */
  listAll(): readonly WaggleEnvironment[] {
    return this.#envs.list();
  }

  node(name: string): WaggleNode | undefined {
    return this.#nodes.get(name);
  }

  /** Calls `listener` on every change of one environment until the returned function is called. */
  subscribe(namespace: string, name: string, listener: Listener): () => void {
    const key = `${namespace}/${name}`;
    const set = this.#listeners.get(key) ?? new Set();
    set.add(listener);
    this.#listeners.set(key, set);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(key);
    };
  }

  /**
   * Resolves once the cache holds `resourceVersion` of one environment (or a later change of it,
   * or its deletion), or after `timeoutMs`: read-your-writes for a caller that just patched the
   * object and answers from the cache next (a preview URL must work the moment expose_port
   * returns it). Best effort: on timeout the caller goes on with what the cache holds.
   */
  caughtUp(namespace: string, name: string, resourceVersion: string, timeoutMs = 5_000): Promise<void> {
    if (this.get(namespace, name)?.metadata.resourceVersion === resourceVersion) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        unsubscribe();
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      const unsubscribe = this.subscribe(namespace, name, (type, env) => {
        if (
          type === 'delete' ||
          env.metadata.resourceVersion === resourceVersion ||
          isLater(env, resourceVersion)
        ) {
          done();
        }
      });
      // The event may have landed between the first check and the subscription.
      if (this.get(namespace, name)?.metadata.resourceVersion === resourceVersion) done();
    });
  }

  async stop(): Promise<void> {
    await Promise.all([this.#envs.stop(), this.#nodes.stop()]);
  }
}

/**
 * Whether `env` is newer than `resourceVersion`. Resource versions are opaque to clients; every
 * apiserver backed by etcd issues increasing integers, so they are compared as such when both
 * parse, and never judged later otherwise (the wait then ends on the exact version or its timeout).
 */
function isLater(env: WaggleEnvironment, resourceVersion: string): boolean {
  const seen = env.metadata.resourceVersion;
  if (!seen || !/^\d+$/.test(seen) || !/^\d+$/.test(resourceVersion)) return false;
  return BigInt(seen) > BigInt(resourceVersion);
}
