// The operator's /metrics as main.ts wires it, from a real process against the harness's
// apiserver and a fake node-agent: one environment created and Running shows up in the
// controller-runtime series of its controller, the work queue's, the phase gauge, the create
// latency by path, the leader gauge, and the scheduling failure of one that fits nowhere.
import type { WaggleEnvironment } from '@waggle/crds';
import { type FakeNodeAgent, startFakeNodeAgent } from '@waggle/node-agent/testing';
import {
  applyCRDs,
  type ComponentProcess,
  deleteTestNamespace,
  freePorts,
  kubeClients,
  registerFakeNode,
  startOperatorProcess,
  waitFor,
} from '@waggle/test';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const kubeconfigPath = inject('kubeconfigPath');
const { kc, custom, core } = kubeClients(kubeconfigPath);
const G = { group: 'waggle.dev', version: 'v1alpha1' };
const namespace = `metrics-${process.pid}`;

let agent: FakeNodeAgent;
let fakeNode: Awaited<ReturnType<typeof registerFakeNode>> | undefined;
let operator: ComponentProcess | undefined;
let opsPort = 0;

const scrape = async () => (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
const value = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ').pop());
};
const create = (name: string, runtime = 'python') =>
  custom.createNamespacedCustomObject({
    ...G,
    namespace,
    plural: 'waggleenvironments',
    body: {
      apiVersion: 'waggle.dev/v1alpha1',
      kind: 'WaggleEnvironment',
      metadata: { name },
      spec: { runtime },
    },
  });

beforeAll(async () => {
  await applyCRDs(kubeconfigPath);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  agent = await startFakeNodeAgent({});
  fakeNode = await registerFakeNode(custom, {
    name: `fake-metrics-${process.pid}`,
    endpoint: agent.url,
    vms: 4,
    runtimes: ['python'],
  });
  [opsPort] = (await freePorts(1)) as [number];
  operator = await startOperatorProcess({
    kubeconfigPath,
    opsPort,
    env: { WAGGLE_WATCH_NAMESPACE: namespace, POD_NAMESPACE: namespace },
  });
}, 60_000);

afterAll(async () => {
  await operator?.kill('SIGTERM');
  await fakeNode?.remove();
  await agent?.stop();
  await deleteTestNamespace(kc, namespace);
});

describe('the operator’s /metrics', () => {
  it('reports reconciles, its queue, phases, create latency, leadership and scheduling failures', {
    timeout: 60_000,
  }, async () => {
    await create('m-1');
    await waitFor(
      async () =>
        (await custom.getNamespacedCustomObject({
          ...G,
          namespace,
          plural: 'waggleenvironments',
          name: 'm-1',
        })) as WaggleEnvironment,
      (e) => e.status?.phase === 'Running',
      'm-1 Running',
      { timeoutMs: 30_000 },
    );
    await create('no-node', 'shell'); // no node runs shell: unschedulable
    const text = await waitFor(
      scrape,
      (t) =>
        (value(t, 'waggle_scheduling_failures_total') ?? 0) >= 1 &&
        value(t, 'waggle_environments{phase="Running"}') === 1,
      'the phase gauge and a scheduling failure',
      { timeoutMs: 20_000 },
    );
    const c = 'controller="waggleenvironment"';
    expect(value(text, `controller_runtime_reconcile_total{${c},result="requeue_after"}`)).toBeGreaterThan(0);
    expect(value(text, `controller_runtime_reconcile_time_seconds_count{${c}}`)).toBeGreaterThan(0);
    expect(value(text, 'workqueue_adds_total{name="waggleenvironment"}')).toBeGreaterThanOrEqual(2);
    expect(value(text, 'workqueue_queue_duration_seconds_count{name="waggleenvironment"}')).toBeGreaterThan(
      0,
    );
    expect(value(text, 'workqueue_depth{name="waggleenvironment"}')).toBeGreaterThanOrEqual(0);
    expect(value(text, 'waggle_environment_create_seconds_count{path="cold"}')).toBe(1);
    expect(value(text, 'leader_election_master_status{name="waggle-operator"}')).toBe(1);
    expect(value(text, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    // The other controllers report through the same runtime.
    expect(text).toMatch(/^workqueue_adds_total\{name="wagglepool"\} \d+$/m);
  });
});
