import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  ENVIRONMENT_PLURAL,
  EXPOSED_PORTS_ANNOTATION,
  GROUP,
  k8sTime,
  suspension,
  VERSION,
  type WaggleEnvironment,
} from '@waggle/crds';
import { formatEnvId } from '@waggle/node-agent/client';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Caller } from '../auth/caller.ts';
import { EnvironmentNotFoundError, InvalidRequestError, PortNotExposedError } from '../errors.ts';
import type { EnvironmentCache } from './environment-cache.ts';
import type { EnvironmentService } from './environments.ts';

/** Most ports one environment may expose at once. */
export const MAX_EXPOSED_PORTS = 16;

const exposureSchema = z
  .object({
    port: z.number().int().min(1).max(65_535),
    public: z.boolean(),
    tokenSha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
    expiresAt: z.iso.datetime().optional(),
    createdAt: z.iso.datetime(),
  })
  // A public entry without a secret or an expiry is never honoured (only the gateway writes
  // this annotation; anything else is ignored rather than trusted).
  .refine((e) => !e.public || (e.tokenSha256 !== undefined && e.expiresAt !== undefined));
export type Exposure = z.infer<typeof exposureSchema>;

/** The environment's exposed ports; an unreadable annotation counts as none (never trusted). */
export function readExposures(env: WaggleEnvironment): Exposure[] {
  const raw = env.metadata.annotations?.[EXPOSED_PORTS_ANNOTATION];
  if (!raw) return [];
  try {
    const parsed = z.array(exposureSchema).safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : [];
  } catch {
    return [];
  }
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
/** Expired, or a public URL whose lifetime exceeds what the gateway allows (not written by it). */
const isExpired = (e: Exposure, now: number, maxPublicMs = Number.POSITIVE_INFINITY) => {
  if (e.expiresAt === undefined) return false;
  const at = Date.parse(e.expiresAt);
  return !(at > now) || at - Date.parse(e.createdAt) > maxPublicMs + 60_000;
};

/** A public preview token: 32 random bytes, URL-safe. Only its hash is stored. */
const newToken = () => randomBytes(32).toString('base64url');
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export interface ExposeResult {
  port: number;
  public: boolean;
  /** Path of the preview URL on the gateway (joined to its base URL by the tool). */
  path: string;
  expiresAt?: string;
}

/**
 * Preview URLs: which ports of an environment the gateway serves, recorded on the
 * WaggleEnvironment itself (so every gateway replica sees them through its watch, and they end
 * with the environment). A private URL needs the owner's credentials; a public one is an
 * unguessable token with an expiry.
 */
export class PreviewService {
  readonly #api: CustomObjectsApi;
  readonly #cache: EnvironmentCache;
  readonly #environments: EnvironmentService;
  readonly #log: Logger;
  readonly #maxPublicMs: number;

  constructor(
    kc: KubeConfig,
    cache: EnvironmentCache,
    environments: EnvironmentService,
    opts: { maxPublicMs: number; log: Logger },
  ) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
    this.#cache = cache;
    this.#environments = environments;
    this.#maxPublicMs = opts.maxPublicMs;
    this.#log = opts.log;
  }

  get maxPublicMinutes(): number {
    return Math.floor(this.#maxPublicMs / 60_000);
  }

  static privatePath(envId: string, port: number): string {
    return `/environments/${envId}/ports/${port}/`;
  }

  static publicPath(token: string): string {
    return `/preview/${token}/`;
  }

  async expose(
    caller: Caller,
    envId: string,
    port: number,
    opts: { public: boolean; expiresMinutes?: number },
  ): Promise<ExposeResult> {
    this.#environments.getRunning(caller, envId);
    const token = opts.public ? newToken() : undefined;
    const now = Date.now();
    const expiresAt = opts.public
      ? k8sTime(new Date(now + Math.min((opts.expiresMinutes ?? 60) * 60_000, this.#maxPublicMs)))
      : undefined;
    await this.#update(caller.namespace, envId, (current) => {
      // One private and one public entry per port: a new public URL replaces the port's previous
      // one (whose secret stops working); the owner's private URL stays.
      const others = current.filter(
        (e) => !(e.port === port && e.public === opts.public) && !isExpired(e, now, this.#maxPublicMs),
      );
      if (others.length >= MAX_EXPOSED_PORTS) {
        throw new InvalidRequestError(
          `environment "${envId}" already exposes ${others.length} ports, the most at once; ` +
            'unexpose_port one you no longer need',
        );
      }
      return [
        ...others,
        {
          port,
          public: opts.public,
          ...(token ? { tokenSha256: sha256(token) } : {}),
          ...(expiresAt ? { expiresAt } : {}),
          createdAt: k8sTime(new Date(now)),
        },
      ];
    });
    this.#log.info(
      { envId: formatEnvId(caller.namespace, envId), port, public: opts.public, expiresAt },
      'port exposed',
    );
    return {
      port,
      public: opts.public,
      path: token ? PreviewService.publicPath(token) : PreviewService.privatePath(envId, port),
      ...(expiresAt ? { expiresAt } : {}),
    };
  }

  /** Ends a port's preview URL (private and public); false when it was not exposed. */
  async unexpose(caller: Caller, envId: string, port: number): Promise<boolean> {
    this.#environments.get(caller, envId);
    let existed = false;
    await this.#update(caller.namespace, envId, (current) => {
      existed = current.some((e) => e.port === port);
      return current.filter((e) => e.port !== port && !isExpired(e, Date.now(), this.#maxPublicMs));
    });
    if (existed) this.#log.info({ envId: formatEnvId(caller.namespace, envId), port }, 'port unexposed');
    return existed;
  }

  /**
   * The caller's running (or suspended: the proxy resumes it) environment and the exposure of
   * `port` (for a private URL).
   */
  resolvePrivate(caller: Caller, envId: string, port: number): WaggleEnvironment {
    const found = this.#environments.get(caller, envId);
    const env = suspension(found) ? found : this.#environments.getRunning(caller, envId);
    if (!readExposures(env).some((e) => e.port === port && !isExpired(e, Date.now(), this.#maxPublicMs))) {
      throw new PortNotExposedError(envId, port);
    }
    return env;
  }

  /**
   * The environment and port a public token opens, or why not: `unknown` (no such token: never
   * issued, unexposed, or its environment is gone) or `expired`.
   */
  resolvePublic(
    token: string,
  ): { env: WaggleEnvironment; port: number; tokenSha256: string } | { refused: 'unknown' | 'expired' } {
    if (!TOKEN_PATTERN.test(token)) return { refused: 'unknown' };
    const wanted = Buffer.from(sha256(token), 'hex');
    for (const env of this.#cache.listAll()) {
      if (env.metadata.deletionTimestamp) continue;
      for (const e of readExposures(env)) {
        if (!e.public || !e.tokenSha256) continue;
        if (!timingSafeEqual(Buffer.from(e.tokenSha256, 'hex'), wanted)) continue;
        if (isExpired(e, Date.now(), this.#maxPublicMs)) return { refused: 'expired' };
        return { env, port: e.port, tokenSha256: e.tokenSha256 };
      }
    }
    return { refused: 'unknown' };
  }

  /**
   * Watches a preview connection's URL: `onRevoked` runs (once) when the exposure is removed or
   * expires, or the environment is deleted. A public URL is identified by its secret's hash, a
   * private one by its port. Returns the unsubscribe function.
   */
  watch(
    env: WaggleEnvironment,
    port: number,
    tokenSha256: string | undefined,
    onRevoked: () => void,
  ): () => void {
    const namespace = env.metadata.namespace as string;
    const name = env.metadata.name as string;
    let done = false;
    const still = (e: WaggleEnvironment | undefined): boolean => {
      if (!e || e.metadata.deletionTimestamp) return false;
      const now = Date.now();
      return readExposures(e).some(
        (x) =>
          !isExpired(x, now, this.#maxPublicMs) &&
          (tokenSha256 ? x.tokenSha256 === tokenSha256 : x.port === port),
      );
    };
    const revoke = () => {
      if (done) return;
      done = true;
      stop();
      onRevoked();
    };
    const unsubscribe = this.#cache.subscribe(namespace, name, (type, e) => {
      if (type === 'delete' || !still(e)) revoke();
    });
    const expiry = tokenSha256
      ? readExposures(env).find((x) => x.tokenSha256 === tokenSha256)?.expiresAt
      : undefined;
    const timer = expiry
      ? setTimeout(revoke, Math.max(0, Math.min(Date.parse(expiry) - Date.now(), 2 ** 31 - 1))).unref()
      : undefined;
    const stop = () => {
      clearTimeout(timer);
      unsubscribe();
    };
    return () => {
      done = true;
      stop();
    };
  }

  /**
   * Read-modify-write of the annotation with optimistic concurrency (the read resourceVersion
   * goes into the merge patch, so a concurrent change makes the apiserver answer 409 and the
   * update is retried on fresh data).
   */
  async #update(namespace: string, name: string, change: (current: Exposure[]) => Exposure[]): Promise<void> {
    const written = await this.#patch(namespace, name, change);
    // URLs are resolved from the watch cache: wait until it holds this write, so that the URL
    // expose_port returns works at once (and an unexposed one stops at once).
    if (written) await this.#cache.caughtUp(namespace, name, written);
  }

  /** Returns the resourceVersion the apiserver gave the patched object. */
  async #patch(
    namespace: string,
    name: string,
    change: (current: Exposure[]) => Exposure[],
  ): Promise<string | undefined> {
    const coords = { group: GROUP, version: VERSION, plural: ENVIRONMENT_PLURAL, namespace, name };
    for (let attempt = 0; ; attempt++) {
      let env: WaggleEnvironment;
      try {
        env = (await this.#api.getNamespacedCustomObject(coords)) as WaggleEnvironment;
      } catch (err) {
        if ((err as { code?: number }).code === 404) throw new EnvironmentNotFoundError(name);
        throw err;
      }
      const next = change(readExposures(env));
      try {
        const patched = (await this.#api.patchNamespacedCustomObject(
          {
            ...coords,
            body: {
              metadata: {
                resourceVersion: env.metadata.resourceVersion,
                annotations: { [EXPOSED_PORTS_ANNOTATION]: next.length ? JSON.stringify(next) : null },
              },
            },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        )) as WaggleEnvironment;
        return patched.metadata.resourceVersion;
      } catch (err) {
        if ((err as { code?: number }).code !== 409 || attempt >= 4) throw err;
      }
    }
  }
}
