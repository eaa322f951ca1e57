import { randomBytes } from 'node:crypto';
import { CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  API_VERSION,
  CALLER_ANNOTATION,
  CALLER_LABEL,
  ENVIRONMENT_FINALIZER,
  ENVIRONMENT_KIND,
  ENVIRONMENT_PLURAL,
  EnvironmentConditionType,
  EnvironmentReason,
  GROUP,
  k8sTime,
  LAST_ACTIVITY_ANNOTATION,
  parseDuration,
  suspension,
  VERSION,
  type WaggleEnvironment,
} from '@waggle/crds';
import { formatEnvId } from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import type { Caller } from '../auth/caller.ts';
import {
  CreateFailedError,
  EnvironmentNotFoundError,
  EnvironmentNotRunningError,
  EnvironmentSuspendedError,
  InvalidRequestError,
  LimitReachedError,
} from '../errors.ts';
import type { ActivityRecorder } from './activity.ts';
import type { EnvironmentCache } from './environment-cache.ts';
import { type CreateRequest, newEnvironmentSpec, type SpecDefaults } from './environment-spec.ts';

export interface EnvironmentDefaults extends SpecDefaults {
  maxPerCaller: number;
  /** How long create() waits for Running (WAGGLE_CREATE_WAIT_TIMEOUT). */
  createWaitTimeoutMs: number;
  /** How long an environment may sit Unschedulable before create_environment gives up. */
  unschedulableGraceMs: number;
  /** How long a tool call on a suspended environment waits for it to resume (WAGGLE_RESUME_WAIT_TIMEOUT). */
  resumeWaitTimeoutMs: number;
}

/** A tool call's side of resolving its environment: its cancellation, and who hears of a resume. */
export interface CallContext {
  signal?: AbortSignal;
  /** Called when the environment was suspended and has resumed, with how long the call waited. */
  onResumed?: (waitedMs: number) => void;
}

/** Phase changes while an environment starts, for progress notifications. */
export type CreateProgress = (phase: string, message: string) => void;

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
export const newEnvironmentId = (): string =>
  `env-${[...randomBytes(10)].map((b) => ID_ALPHABET[b % ID_ALPHABET.length]).join('')}`;

const readyCondition = (e: WaggleEnvironment) =>
  e.status?.conditions?.find((c) => c.type === EnvironmentConditionType.Ready);
const scheduledCondition = (e: WaggleEnvironment) =>
  e.status?.conditions?.find((c) => c.type === EnvironmentConditionType.Scheduled);

/** How long a create waits for a namespace's new ResourceQuota to be counted. */
const QUOTA_SETTLE_MS = 10_000;

/**
 * The apiserver refused the object for a reason the caller can act on (a ResourceQuota, an
 * admission policy, validation): a user error with the apiserver's own words. Other failures
 * (unreachable apiserver, the gateway's own RBAC) stay internal faults.
 */
function refusedCreate(err: unknown): CreateFailedError | undefined {
  const message = apiserverRefusal(err);
  if (message === undefined) return undefined;
  return new CreateFailedError(
    `the cluster refused the new environment: ${message}. ` +
      'Destroy environments you no longer need, or ask the cluster administrator about the limit.',
  );
}

/**
 * The apiserver's words when it refused a write for a reason the caller can act on (403 from a
 * quota or an admission policy, 422 validation, 409); undefined for anything else.
 */
function apiserverRefusal(err: unknown): string | undefined {
  const e = err as { code?: number; body?: unknown };
  if (e.code !== 403 && e.code !== 422 && e.code !== 409) return undefined;
  let message = '';
  try {
    const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
    message = (body as { message?: string })?.message ?? '';
  } catch {
    message = String(e.body ?? '');
  }
  // The gateway's own ServiceAccount lacking RBAC is an operator mistake, not the caller's.
  if (e.code === 403 && !/quota|denied the request|admission|policy/i.test(message)) return undefined;
  return message || `HTTP ${e.code}`;
}

/**
 * Environments as a caller sees them: WaggleEnvironments in the caller's namespace. Nothing here
 * accepts a namespace from the caller — it always comes from the authenticated `Caller`.
 */
export class EnvironmentService {
  readonly #api: CustomObjectsApi;
  readonly #cache: EnvironmentCache;
  readonly #activity: ActivityRecorder;
  readonly #defaults: EnvironmentDefaults;
  readonly #log: Logger;
  /** Environments a caller is creating or created that the watch cache may not show yet, by caller id. */
  readonly #justCreated = new Map<string, Set<string>>();

  constructor(
    kc: KubeConfig,
    cache: EnvironmentCache,
    activity: ActivityRecorder,
    defaults: EnvironmentDefaults,
    log: Logger,
  ) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
    this.#cache = cache;
    this.#activity = activity;
    this.#defaults = defaults;
    this.#log = log;
  }

  #coords(namespace: string) {
    return { group: GROUP, version: VERSION, plural: ENVIRONMENT_PLURAL, namespace };
  }

  /** The caller's environment, or EnvironmentNotFoundError (also for other namespaces' IDs). */
  get(caller: Caller, id: string): WaggleEnvironment {
    const env = this.#cache.get(caller.namespace, id);
    if (!env || env.metadata.deletionTimestamp) throw new EnvironmentNotFoundError(id);
    return env;
  }

  /**
   * The caller's environment for a tool call that needs its VM — the one place tools resolve
   * it. A suspended environment (idleAction Suspend) is resumed first: the call records activity
   * at once (not throttled: the operator resumes on it) and waits, bounded, for Running.
   */
  async resolveRunning(caller: Caller, id: string, call: CallContext = {}): Promise<WaggleEnvironment> {
    const env = this.get(caller, id);
    if (suspension(env)) await this.#resume(caller.namespace, id, call);
    return this.getRunning(caller, id);
  }

  /**
   * `env` as it runs again when it is suspended (preview traffic to it: the request waits,
   * bounded by `signal` and the resume wait), else `env` itself.
   */
  async resumed(env: WaggleEnvironment, signal?: AbortSignal): Promise<WaggleEnvironment> {
    if (!suspension(env)) return env;
    const namespace = env.metadata.namespace as string;
    const id = env.metadata.name as string;
    await this.#resume(namespace, id, signal ? { signal } : {});
    return this.#cache.get(namespace, id) ?? env;
  }

  /** Records activity now (the operator resumes on it) and waits for Running. */
  async #resume(namespace: string, id: string, call: CallContext): Promise<void> {
    const started = Date.now();
    await this.#activity.touchNow(namespace, id);
    this.#log.info({ envId: formatEnvId(namespace, id) }, 'resuming a suspended environment');
    await this.#waitResumed(namespace, id, call.signal);
    const waitedMs = Date.now() - started;
    this.#log.info({ envId: formatEnvId(namespace, id), waitedMs }, 'environment resumed');
    call.onResumed?.(waitedMs);
  }

  /** Resolves once the environment runs again (Running, not suspending); rejects with why not. */
  #waitResumed(namespace: string, id: string, signal?: AbortSignal): Promise<void> {
    const timeoutMs = this.#defaults.resumeWaitTimeoutMs;
    return new Promise<void>((resolve, reject) => {
      const cleanups: Array<() => void> = [];
      let last: WaggleEnvironment | undefined;
      const finish = (err?: Error) => {
        for (const c of cleanups) c();
        if (err) reject(err);
        else resolve();
      };
      const check = (env: WaggleEnvironment | undefined, deleted = false) => {
        if (!env || deleted || env.metadata.deletionTimestamp)
          return finish(new EnvironmentNotFoundError(id));
        last = env;
        const phase = env.status?.phase;
        if (phase === 'Running' && !suspension(env)) return finish();
        if (phase === 'Failed')
          return finish(new EnvironmentNotRunningError(id, 'Failed', env.status?.message));
      };
      cleanups.push(this.#cache.subscribe(namespace, id, (type, env) => check(env, type === 'delete')));
      const timer = setTimeout(
        () => finish(new EnvironmentSuspendedError(id, timeoutMs, last?.status?.message)),
        timeoutMs,
      );
      cleanups.push(() => clearTimeout(timer));
      if (signal) {
        const onAbort = () =>
          finish(new EnvironmentNotRunningError(id, 'Suspended', 'the call ended while it was resuming'));
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        cleanups.push(() => signal.removeEventListener('abort', onAbort));
      }
      check(this.#cache.get(namespace, id));
    });
  }

  /** The caller's environment, which must be Running (no resume: see resolveRunning). */
  getRunning(caller: Caller, id: string): WaggleEnvironment {
    const env = this.get(caller, id);
    const phase = env.status?.phase ?? 'Pending';
    if (phase !== 'Running' || !env.status?.nodeName || !env.status.vmId) {
      throw new EnvironmentNotRunningError(id, phase, env.status?.message);
    }
    return env;
  }

  list(caller: Caller): WaggleEnvironment[] {
    return this.#cache
      .list(caller.namespace)
      .filter((e) => !e.metadata.deletionTimestamp)
      .sort(
        (a, b) =>
          (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') ||
          (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''),
      );
  }

  async create(
    caller: Caller,
    req: CreateRequest,
    opts: { signal?: AbortSignal; onProgress?: CreateProgress } = {},
  ): Promise<WaggleEnvironment> {
    // The limit check and the reservation happen in one synchronous step, so concurrent creates
    // of one caller cannot both pass it, and their apiserver writes still run in parallel.
    const name = this.#reserve(caller);
    try {
      await this.#createObject(caller, name, req);
    } catch (err) {
      this.#release(caller, name);
      throw err;
    }
    try {
      return await this.#waitRunning(caller, name, opts);
    } catch (err) {
      // Never leave a half-made environment behind for an error the caller was told about.
      await this.#delete(caller.namespace, name).catch(() => undefined);
      throw err;
    } finally {
      // By now the watch cache has shown it (or it is being deleted): it counts from there.
      this.#release(caller, name);
    }
  }

  /**
   * Counts what the cache shows plus what this gateway is creating or created that the watch
   * has not shown yet, refuses past the limit, and reserves a new name. Synchronous on purpose.
   */
  #reserve(caller: Caller): string {
    const mine = new Set(
      this.#cache
        .list(caller.namespace)
        .filter((e) => e.metadata.labels?.[CALLER_LABEL] === caller.id && !e.metadata.deletionTimestamp)
        .map((e) => e.metadata.name as string),
    );
    for (const n of this.#justCreated.get(caller.id) ?? []) mine.add(n);
    if (mine.size >= this.#defaults.maxPerCaller) throw new LimitReachedError(this.#defaults.maxPerCaller);
    const name = newEnvironmentId();
    const pending = this.#justCreated.get(caller.id) ?? new Set<string>();
    pending.add(name);
    this.#justCreated.set(caller.id, pending);
    return name;
  }

  #release(caller: Caller, name: string): void {
    const pending = this.#justCreated.get(caller.id);
    pending?.delete(name);
    if (pending?.size === 0) this.#justCreated.delete(caller.id);
  }

  async #createObject(caller: Caller, name: string, req: CreateRequest): Promise<void> {
    const body: WaggleEnvironment = {
      apiVersion: API_VERSION,
      kind: ENVIRONMENT_KIND,
      metadata: {
        name,
        namespace: caller.namespace,
        labels: { [CALLER_LABEL]: caller.id, 'app.kubernetes.io/managed-by': 'waggle-mcp-gateway' },
        annotations: { [CALLER_ANNOTATION]: caller.principal },
        // The operator's finalizer from the start: it need not add it in a write of its own.
        finalizers: [ENVIRONMENT_FINALIZER],
      },
      // Only what was chosen: the apiserver applies the CRD's defaults to the rest.
      spec: newEnvironmentSpec(req, this.#defaults),
    } as WaggleEnvironment;
    // A namespace's ResourceQuota is counted only once its status is filled (the operator does
    // that within a second of making it); until then quota admission refuses every create as
    // "status unknown". That is the cluster catching up, not a refusal: wait for it, bounded.
    for (let waitedMs = 0; ; ) {
      try {
        await this.#api.createNamespacedCustomObject({ ...this.#coords(caller.namespace), body });
        break;
      } catch (err) {
        const refused = refusedCreate(err);
        if (refused && /status unknown for quota/.test(refused.message) && waitedMs < QUOTA_SETTLE_MS) {
          const delay = Math.min(250 * 2 ** Math.floor(waitedMs / 1_000), 2_000);
          await new Promise((r) => setTimeout(r, delay));
          waitedMs += delay;
          continue;
        }
        throw refused ?? err;
      }
    }
    this.#log.info(
      { envId: formatEnvId(caller.namespace, name), caller: caller.principal },
      'environment created',
    );
  }

  #waitRunning(
    caller: Caller,
    name: string,
    opts: { signal?: AbortSignal; onProgress?: CreateProgress },
  ): Promise<WaggleEnvironment> {
    const { createWaitTimeoutMs, unschedulableGraceMs } = this.#defaults;
    return new Promise<WaggleEnvironment>((resolve, reject) => {
      let seen = false;
      let lastPhase = '';
      let lastMessage = '';
      let unschedulableSince: number | undefined;
      const cleanups: Array<() => void> = [];
      const finish = (err: Error | undefined, env?: WaggleEnvironment) => {
        for (const c of cleanups) c();
        if (err) reject(err);
        else resolve(env as WaggleEnvironment);
      };
      const check = (env: WaggleEnvironment | undefined, deleted = false) => {
        if (!env || deleted) {
          if (seen || deleted)
            finish(new CreateFailedError(`environment "${name}" was deleted while it was starting`));
          return;
        }
        seen = true;
        const phase = env.status?.phase ?? 'Pending';
        const message = env.status?.message ?? phase;
        // A phase change, or a new step within one (an image pull says each of its steps).
        if (phase !== lastPhase || message !== lastMessage) {
          lastPhase = phase;
          lastMessage = message;
          opts.onProgress?.(phase, message);
        }
        if (phase === 'Running') return finish(undefined, env);
        if (phase === 'Failed') {
          const ready = readyCondition(env);
          return finish(
            new CreateFailedError(
              `environment "${name}" failed to start (${ready?.reason ?? 'Failed'}): ${env.status?.message ?? 'no detail'}. ` +
                'It has been removed; try again, and if it keeps failing ask the platform team to check the node-agent.',
            ),
          );
        }
        const sched = scheduledCondition(env);
        if (phase === 'Pending' && sched?.reason === EnvironmentReason.Unschedulable) {
          unschedulableSince ??= Date.now();
          if (Date.now() - unschedulableSince >= unschedulableGraceMs) {
            return finish(
              new CreateFailedError(
                `no node can run the environment right now: ${sched.message ?? 'no capacity'}. ` +
                  'Destroy environments you no longer need or try again later.',
              ),
            );
          }
          const t = setTimeout(() => check(this.#cache.get(caller.namespace, name)), unschedulableGraceMs);
          cleanups.push(() => clearTimeout(t));
        } else {
          unschedulableSince = undefined;
        }
      };
      cleanups.push(
        this.#cache.subscribe(caller.namespace, name, (type, env) => check(env, type === 'delete')),
      );
      const timer = setTimeout(
        () =>
          finish(
            new CreateFailedError(
              `environment "${name}" was not ready after ${Math.round(createWaitTimeoutMs / 1000)} s ` +
                `(last phase: ${lastPhase || 'Pending'}); it has been removed. Try again later.`,
            ),
          ),
        createWaitTimeoutMs,
      );
      cleanups.push(() => clearTimeout(timer));
      if (opts.signal) {
        const onAbort = () =>
          finish(new CreateFailedError('create_environment was cancelled; nothing was kept'));
        if (opts.signal.aborted) return onAbort();
        opts.signal.addEventListener('abort', onAbort, { once: true });
        cleanups.push(() => opts.signal?.removeEventListener('abort', onAbort));
      }
      check(this.#cache.get(caller.namespace, name));
    });
  }

  /** Longest idle timeout an environment may have, in minutes (its maximum lifetime). */
  maxTimeoutMinutes(env?: WaggleEnvironment): number {
    const lifetime = env?.spec.maxLifetime
      ? parseDuration(env.spec.maxLifetime)
      : this.#defaults.maxLifetimeMs;
    return Math.floor(lifetime / 60_000);
  }

  /**
   * Sets a new idle timeout and restarts the idle clock (the activity annotation is now): the
   * environment expires `timeoutMinutes` after its last use, and never after its maximum lifetime.
   */
  async extend(caller: Caller, id: string, timeoutMinutes: number): Promise<WaggleEnvironment> {
    const env = this.get(caller, id);
    const max = this.maxTimeoutMinutes(env);
    if (timeoutMinutes > max) {
      throw new InvalidRequestError(
        `timeout_minutes ${timeoutMinutes} is above this environment's maximum lifetime of ${max} minutes ` +
          '(set by the platform, WAGGLE_MAX_LIFETIME); use at most that, and create a new environment when it ends',
      );
    }
    const now = k8sTime(new Date());
    let updated: WaggleEnvironment;
    try {
      updated = (await this.#api.patchNamespacedCustomObject(
        {
          ...this.#coords(caller.namespace),
          name: id,
          body: {
            metadata: { annotations: { [LAST_ACTIVITY_ANNOTATION]: now } },
            spec: { idleTimeout: `${timeoutMinutes}m` },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )) as WaggleEnvironment;
    } catch (err) {
      if ((err as { code?: number }).code === 404) throw new EnvironmentNotFoundError(id);
      // E.g. the cluster's admission policy caps idle timeouts lower than the gateway does.
      const refused = apiserverRefusal(err);
      if (refused) throw new InvalidRequestError(`the cluster refused the new timeout: ${refused}`);
      throw err;
    }
    this.#log.info({ envId: formatEnvId(caller.namespace, id), timeoutMinutes }, 'environment extended');
    return updated;
  }

  async destroy(caller: Caller, id: string): Promise<void> {
    this.get(caller, id); // not found (or someone else's) → a clear error, not a silent success
    await this.#delete(caller.namespace, id);
    this.#log.info(
      { envId: formatEnvId(caller.namespace, id), caller: caller.principal },
      'environment deleted',
    );
  }

  async #delete(namespace: string, name: string): Promise<void> {
    try {
      await this.#api.deleteNamespacedCustomObject({ ...this.#coords(namespace), name });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
  }
}
