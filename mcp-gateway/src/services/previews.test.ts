import { createHash } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { EXPOSED_PORTS_ANNOTATION, type WaggleEnvironment } from '@waggle/crds';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { EnvironmentCache } from './environment-cache.ts';
import type { EnvironmentService } from './environments.ts';
import { PreviewService, readExposures } from './previews.ts';

const TOKEN = `${'A'.repeat(42)}B`;
const sha = createHash('sha256').update(TOKEN).digest('hex');
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
const env = (exposures: unknown): WaggleEnvironment =>
  ({
    metadata: {
      name: 'env-1',
      namespace: 'ns',
      annotations: { [EXPOSED_PORTS_ANNOTATION]: JSON.stringify(exposures) },
    },
    spec: { runtime: 'python', idleTimeout: '30m' },
  }) as unknown as WaggleEnvironment;

function service(envs: WaggleEnvironment[]) {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const cache = { listAll: () => envs, subscribe: () => () => undefined } as unknown as EnvironmentCache;
  return new PreviewService(kc, cache, {} as EnvironmentService, {
    maxPublicMs: 3_600_000,
    log: pino({ level: 'silent' }),
  });
}

describe('preview exposures (the annotation is data from the cluster, not trusted)', () => {
  it('ignores public entries without a secret or an expiry, and unparsable times', () => {
    const now = Date.now();
    expect(readExposures(env([{ port: 80, public: true, tokenSha256: sha, createdAt: iso(now) }]))).toEqual(
      [],
    );
    expect(
      readExposures(env([{ port: 80, public: true, createdAt: iso(now), expiresAt: iso(now + 1) }])),
    ).toEqual([]);
    expect(
      readExposures(
        env([{ port: 80, public: true, tokenSha256: sha, createdAt: iso(now), expiresAt: 'soon' }]),
      ),
    ).toEqual([]);
    expect(readExposures(env('not a list'))).toEqual([]);
    expect(readExposures(env([{ port: 80, public: false, createdAt: iso(now) }]))).toHaveLength(1);
  });

  it('opens a public URL by its secret only while valid, and not one living longer than the gateway allows', () => {
    const now = Date.now();
    const valid = {
      port: 80,
      public: true,
      tokenSha256: sha,
      createdAt: iso(now - 1_000),
      expiresAt: iso(now + 600_000),
    };
    expect(service([env([valid])]).resolvePublic(TOKEN)).toMatchObject({ port: 80, tokenSha256: sha });
    expect(service([env([valid])]).resolvePublic(`${'A'.repeat(42)}C`)).toEqual({ refused: 'unknown' });
    expect(service([env([{ ...valid, expiresAt: iso(now - 1) }])]).resolvePublic(TOKEN)).toEqual({
      refused: 'expired',
    });
    // Written by someone else with a 10-year lifetime: not honoured beyond the maximum (1 h here).
    const forged = { ...valid, expiresAt: iso(now + 10 * 365 * 86_400_000) };
    expect(service([env([forged])]).resolvePublic(TOKEN)).toEqual({ refused: 'expired' });
    // A deleted environment's URLs are gone at once.
    const deleting = env([valid]);
    deleting.metadata.deletionTimestamp = iso(now);
    expect(service([deleting]).resolvePublic(TOKEN)).toEqual({ refused: 'unknown' });
  });
});
