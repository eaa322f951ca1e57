import type { KubernetesObject } from '@kubernetes/client-node';
import type { WaggleEnvironment } from '@waggle/crds';
import {
  environmentInformer,
  type Informer,
  type InformerEvent,
  keyOf,
  startInformer,
} from '@waggle/crds/informer';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { applyCRDs, deleteTestNamespace, kubeClients } from '../src/index.ts';

const kubeconfigPath = inject('kubeconfigPath');
const { kc, custom, core } = kubeClients(kubeconfigPath);
const namespace = `informer-${process.pid}`;
const coords = { group: 'waggle.dev', version: 'v1alpha1', plural: 'waggleenvironments' };
const events: Array<[InformerEvent, string]> = [];
let informer: Informer<WaggleEnvironment>;

const createEnvironment = (name: string, runtime: string) =>
  custom.createNamespacedCustomObject({
    ...coords,
    namespace,
    body: {
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleEnvironment',
      metadata: { name },
      spec: { runtime },
    },
  });

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(events)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  informer = environmentInformer({
    kc,
    onEvent: (type, obj) => events.push([type, keyOf(obj)]),
    resyncMs: 500,
    log: pino({ level: 'silent' }),
  });
  await informer.synced;
}, 60_000);

afterAll(async () => {
  await informer?.stop();
  await deleteTestNamespace(kc, namespace);
});

describe('informer on a real apiserver', () => {
  it('delivers add, update and delete and keeps a cache keyed by namespace/name', async () => {
    const key = `${namespace}/inf-1`;
    await createEnvironment('inf-1', 'python');
    await until(() => events.some(([t, k]) => t === 'add' && k === key), 'add');
    expect(informer.get(key)?.metadata.name).toBe('inf-1');

    const obj = (await custom.getNamespacedCustomObject({ ...coords, namespace, name: 'inf-1' })) as {
      spec: { idleTimeout: string };
    };
    obj.spec.idleTimeout = '5m';
    await custom.replaceNamespacedCustomObject({ ...coords, namespace, name: 'inf-1', body: obj });
    await until(() => informer.get(key)?.spec.idleTimeout === '5m', 'updated cache');

    await custom.deleteNamespacedCustomObject({ ...coords, namespace, name: 'inf-1' });
    await until(() => events.some(([t, k]) => t === 'delete' && k === key), 'delete');
    expect(informer.get(key)).toBeUndefined();
  });

  it('re-delivers cached objects on resync (level-based safety net)', async () => {
    await createEnvironment('inf-2', 'shell');
    const key = `${namespace}/inf-2`;
    await until(() => events.filter(([t, k]) => t === 'update' && k === key).length >= 2, 'two resyncs');
  });
});

describe('informer start-up', () => {
  it('is synced only after a list succeeded, retrying failed lists with backoff', async () => {
    await createEnvironment('inf-3', 'node');
    let calls = 0;
    let syncedAt: number | undefined;
    const flaky = startInformer<KubernetesObject>({
      name: 'flaky',
      kc,
      path: `/apis/waggle.dev/v1alpha1/namespaces/${namespace}/waggleenvironments`,
      list: async () => {
        calls++;
        if (calls <= 2) throw new Error('apiserver not ready'); // as during a control-plane restart
        return custom.listNamespacedCustomObject({ ...coords, namespace });
      },
      onEvent: () => undefined,
      log: pino({ level: 'silent' }),
    });
    try {
      void flaky.synced.then(() => {
        syncedAt = calls;
      });
      await Promise.race([
        flaky.synced,
        new Promise((_, reject) => setTimeout(() => reject(new Error('never synced')), 10_000)),
      ]);
      expect(syncedAt).toBe(3); // not after the failed first or second list
      expect(flaky.get(`${namespace}/inf-3`)?.metadata?.name).toBe('inf-3');
    } finally {
      await flaky.stop();
    }
  });
});
