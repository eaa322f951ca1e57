import { CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { ENVIRONMENT_PLURAL, GROUP, LAST_ACTIVITY_ANNOTATION, VERSION } from '@waggle/crds';
import { formatEnvId } from '@waggle/node-agent/client';
import type { Logger } from 'pino';

/**
 * Records that an environment was used, for idle expiry: a merge patch of the
 * `waggle.dev/last-activity` annotation, at most once per `intervalMs` per environment (so an
 * agent running hundreds of commands costs one write per interval, not one per call). The
 * operator reads the annotation; see docs/adr/0006.
 */
export class ActivityRecorder {
  readonly #api: CustomObjectsApi;
  readonly #intervalMs: number;
  readonly #log: Logger;
  readonly #lastWrite = new Map<string, number>();

  constructor(kc: KubeConfig, opts: { intervalMs: number; log: Logger }) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
    this.#intervalMs = opts.intervalMs;
    this.#log = opts.log;
  }

  /**
   * Fire and forget: a failed write is logged and retried on the next use. With the
   * environment's idle timeout, writes come at least four times per timeout, so a short
   * timeout (set on the object directly) cannot expire an environment that is in use.
   */
  touch(namespace: string, name: string, idleTimeoutMs?: number, now = Date.now()): void {
    const key = `${namespace}/${name}`;
    const last = this.#lastWrite.get(key);
    const interval =
      idleTimeoutMs && idleTimeoutMs > 0 ? Math.min(this.#intervalMs, idleTimeoutMs / 4) : this.#intervalMs;
    if (last !== undefined && now - last < interval) return;
    this.#lastWrite.set(key, now);
    if (this.#lastWrite.size > 50_000) this.#lastWrite.clear();
    this.#patch(namespace, name, now).catch((err: Error) => {
      this.#lastWrite.delete(key);
      this.#log.warn({ envId: formatEnvId(namespace, name), err: err.message }, 'recording activity failed');
    });
  }

  /**
   * Records use now, however recently the last write was, and resolves once it is written (a
   * tool call on a suspended environment: the operator resumes it on this write).
   */
  async touchNow(namespace: string, name: string, now = Date.now()): Promise<void> {
    const key = `${namespace}/${name}`;
    this.#lastWrite.set(key, now);
    try {
      await this.#patch(namespace, name, now);
    } catch (err) {
      this.#lastWrite.delete(key);
      throw err;
    }
  }

  #patch(namespace: string, name: string, now: number): Promise<unknown> {
    const at = new Date(now).toISOString().replace(/\.\d+Z$/, 'Z');
    return this.#api.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: ENVIRONMENT_PLURAL,
        namespace,
        name,
        body: { metadata: { annotations: { [LAST_ACTIVITY_ANNOTATION]: at } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  forget(namespace: string, name: string): void {
    this.#lastWrite.delete(`${namespace}/${name}`);
  }
}
