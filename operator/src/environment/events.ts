import { randomBytes } from 'node:crypto';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

/** Records Kubernetes Events (`kubectl describe` shows them). Failures are logged, never thrown. */
export class EventRecorder {
  readonly #api: CoreV1Api;
  readonly #component: string;
  readonly #instance: string;
  readonly #log: Logger;

  constructor(kc: KubeConfig, opts: { component: string; instance: string; log: Logger }) {
    this.#api = kc.makeApiClient(CoreV1Api);
    this.#component = opts.component;
    this.#instance = opts.instance;
    this.#log = opts.log;
  }

  async record(
    obj: InvolvedObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    // Events about cluster-scoped objects (WaggleNodes) live in "default", as for Nodes.
    const namespace = obj.metadata.namespace ?? 'default';
    const now = new Date();
    try {
      await this.#api.createNamespacedEvent({
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
      });
    } catch (err) {
      this.#log.warn({ reason, err: (err as Error).message }, 'could not record event');
    }
  }
}
