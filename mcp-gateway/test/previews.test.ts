import { ENVIRONMENT_PLURAL, GROUP, VERSION, type WaggleEnvironment } from '@waggle/crds';
import { applyCRDs, deleteTestNamespace, kubeClients } from '@waggle/test';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeCaller } from '../src/auth/caller.ts';
import { EnvironmentCache } from '../src/services/environment-cache.ts';
import type { EnvironmentService } from '../src/services/environments.ts';
import { PreviewService } from '../src/services/previews.ts';

// Preview URLs are resolved from the gateway's watch cache, while expose_port writes through the
// apiserver: a URL must work the moment expose_port returns it (an agent hands it on at once),
// and stop the moment unexpose_port returns. Real apiserver, real watch.
const kubeconfigPath = inject('kubeconfigPath');
const { kc, custom, core } = kubeClients(kubeconfigPath);
const namespace = `previews-${process.pid}`;
const name = 'env-previews';
const log = pino({ level: 'silent' });
let cache: EnvironmentCache;
let previews: PreviewService;

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: ENVIRONMENT_PLURAL,
    namespace,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'WaggleEnvironment',
      metadata: { name },
      spec: { runtime: 'python', idleTimeout: '30m', maxLifetime: '1h' },
    },
  });
  cache = new EnvironmentCache(kc, log, { namespace });
  await cache.synced;
  // The environment is "running" for this test; the lookup itself is not what is tested here.
  const environments = {
    getRunning: () => cache.get(namespace, name) as WaggleEnvironment,
    get: () => cache.get(namespace, name) as WaggleEnvironment,
  } as unknown as EnvironmentService;
  previews = new PreviewService(kc, cache, environments, { maxPublicMs: 3_600_000, log });
}, 60_000);

afterAll(async () => {
  await cache?.stop();
  await deleteTestNamespace(kc, namespace);
});

describe('preview URLs and the watch cache', () => {
  it('a public URL resolves as soon as expose_port returns and is refused as soon as unexpose_port returns', async () => {
    const caller = makeCaller('system:serviceaccount:x:agent', namespace);
    for (let round = 0; round < 15; round++) {
      const exposed = await previews.expose(caller, name, 8000 + round, { public: true });
      const token = exposed.path.split('/')[2] ?? '';
      expect(previews.resolvePublic(token), `round ${round}: right after expose`).toMatchObject({
        port: 8000 + round,
      });
      expect(previews.resolvePrivate(caller, name, 8000 + round).metadata.name).toBe(name);
      expect(await previews.unexpose(caller, name, 8000 + round)).toBe(true);
      expect(previews.resolvePublic(token), `round ${round}: right after unexpose`).toEqual({
        refused: 'unknown',
      });
    }
  });

  it('waiting for the cache ends on a later version or a timeout, never hangs', async () => {
    const current = cache.get(namespace, name)?.metadata.resourceVersion ?? '';
    const started = Date.now();
    await cache.caughtUp(namespace, name, current);
    // A version the cache will never see (no write follows): the wait gives up after its timeout.
    await cache.caughtUp(namespace, name, `${BigInt(current) + 1_000_000n}`, 300);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
