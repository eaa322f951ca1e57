import { randomBytes } from 'node:crypto';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

/** Events waiting to be sent at most; more are dropped (and counted in one warning). */
export const MAX_PENDING_EVENTS = 1_000;

type EventBody = Parameters<CoreV1Api['createNamespacedEvent']>[0];

/**
 * Records Kubernetes Events (`kubectl describe` shows them) off the caller's path, as client-go's
 * recorder does: `record` queues the event and returns at once, one sender posts them in order.
 * An Event is an apiserver write; awaiting it inside a reconcile put a write on every create's
 * path. Failures are logged, never thrown; a full queue drops new events with one warning.
 */
export class EventRecorder {
  readonly #api: CoreV1Api;
  readonly #component: string;
  readonly #instance: string;
  readonly #log: Logger;
  readonly #queue: Array<{ body: EventBody; reason: string; about: { envId?: string; object?: string } }> =
    [];
  #sending: Promise<void> | undefined;
  #dropped = 0;

  constructor(kc: KubeConfig, opts: { component: string; instance: string; log: Logger }) {
    this.#api = kc.makeApiClient(CoreV1Api);
    this.#component = opts.component;
    this.#instance = opts.instance;
    this.#log = opts.log;
  }

  record(obj: InvolvedObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const about = logId(obj);
    if (this.#queue.length >= MAX_PENDING_EVENTS) {
      if (this.#dropped++ === 0)
        this.#log.warn(
          { reason, ...about, pending: this.#queue.length },
          'event queue full; dropping events',
        );
      return Promise.resolve();
    }
    // Events about cluster-scoped objects (WaggleNodes) live in "default", as for Nodes.
    const namespace = obj.metadata.namespace ?? 'default';
    const now = new Date();
    this.#queue.push({
      reason,
      about,
      body: {
        namespace,
        body: {
          metadata: { name: `${obj.metadata.name}.${randomBytes(6).toString('hex')}`, namespace },
          involvedObject: {
            apiVersion: obj.apiVersion,
            kind: obj.kind,
            name: obj.metadata.name,
            ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
            uid: obj.metadata.uid,
            resourceVersion: obj.metadata.resourceVersion,
          },
          reason,
          message: message.slice(0, 1000),
          type,
          count: 1,
          firstTimestamp: now,
          lastTimestamp: now,
          source: { component: this.#component },
          reportingComponent: this.#component,
          reportingInstance: this.#instance,
        },
      },
    });
    this.#sending ??= this.#send();
    return Promise.resolve();
  }

  /** Resolves once every queued event was sent (or failed), or after `timeoutMs`. */
  async flush(timeoutMs = 5_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      (async () => {
        while (this.#sending) await this.#sending;
      })(),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }

  async #send(): Promise<void> {
    for (let next = this.#queue.shift(); next; next = this.#queue.shift()) {
      try {
        await this.#api.createNamespacedEvent(next.body);
      } catch (err) {
        this.#log.warn(
          { reason: next.reason, ...next.about, err: (err as Error).message },
          'could not record event',
        );
      }
    }
    // In the same step as the empty-queue check: a record() after it starts a new sender.
    this.#sending = undefined;
    if (this.#dropped > 0) {
      this.#log.warn({ dropped: this.#dropped }, 'events dropped while the queue was full');
      this.#dropped = 0;
    }
  }
}

/** How logs name the event's object: an environment by its `envId` ("<namespace>/<name>"). */
function logId(obj: InvolvedObject): { envId?: string; object?: string } {
  const { name, namespace } = obj.metadata;
  if (obj.kind === 'WaggleEnvironment' && namespace && name) return { envId: `${namespace}/${name}` };
  return { object: `${obj.kind}/${namespace ? `${namespace}/` : ''}${name ?? ''}` };
}
