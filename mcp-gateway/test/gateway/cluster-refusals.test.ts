// The cluster saying no: an admission policy, a ResourceQuota (refusing, or brand-new and not
// yet counted), the scheduler finding no node — each an isError result with the cluster's reason.
import { AdmissionregistrationV1Api } from '@kubernetes/client-node';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { WaggleEnvironment } from '@waggle/crds';
import { call, ENVIRONMENTS, errorText, ok, waitFor } from '@waggle/test';
import { beforeAll, describe, expect, it } from 'vitest';
import { core, custom, kc, nsA, nsB, suffix, useGatewayStack } from './fixture.ts';

const stack = useGatewayStack();
let a: Client;
let b: Client;
beforeAll(() => {
  ({ a, b } = stack);
});

describe('mcp-gateway when the cluster refuses (real apiserver and operator, fake node-agent)', () => {
  it('turns an admission policy refusing extend_environment into an isError result with its reason', {
    timeout: 60_000,
  }, async () => {
    // A cluster whose policy caps idle timeouts below the gateway's own maximum.
    const admission = kc.makeApiClient(AdmissionregistrationV1Api);
    const name = `cap-idle-${suffix}`;
    await admission.createValidatingAdmissionPolicy({
      body: {
        metadata: { name },
        spec: {
          failurePolicy: 'Fail',
          matchConstraints: {
            resourceRules: [
              {
                apiGroups: ['waggle.dev'],
                apiVersions: ['*'],
                operations: ['UPDATE'],
                resources: ['waggleenvironments'],
              },
            ],
          },
          validations: [
            {
              expression: "duration(object.spec.idleTimeout) <= duration('1h')",
              message:
                'spec.idleTimeout exceeds this cluster’s limit of 1h (chart value limits.maxIdleTimeout)',
            },
          ],
        },
      },
    });
    await admission.createValidatingAdmissionPolicyBinding({
      body: {
        metadata: { name },
        spec: {
          policyName: name,
          validationActions: ['Deny'],
          matchResources: {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': nsA } },
          },
        },
      },
    });
    try {
      const { environment_id } = await ok<{ environment_id: string }>(a, 'create_environment', {
        runtime: 'python',
      });
      // Policies take effect once the apiserver has loaded them: retry until refused.
      const r = await waitFor(
        () => call(a, 'extend_environment', { environment_id, timeout_minutes: 120 }),
        (res) => res.isError === true,
        'extend_environment refused by the policy',
        { timeoutMs: 20_000, intervalMs: 500 },
      );
      expect(errorText(r)).toMatch(
        /the cluster refused the new timeout: .*limit of 1h \(chart value limits\.maxIdleTimeout\)/,
      );
      await ok(a, 'destroy_environment', { environment_id });
    } finally {
      await admission.deleteValidatingAdmissionPolicyBinding({ name });
      await admission.deleteValidatingAdmissionPolicy({ name });
    }
  });

  it('turns a ResourceQuota refusal into an isError result with the apiserver’s reason', {
    timeout: 30_000,
  }, async () => {
    const resource = 'count/waggleenvironments.waggle.dev';
    await core.createNamespacedResourceQuota({
      namespace: nsB,
      body: { metadata: { name: 'no-envs' }, spec: { hard: { [resource]: '0' } } },
    });
    try {
      // No quota controller runs beside this apiserver: write the usage it would have computed.
      const q = await core.readNamespacedResourceQuota({ name: 'no-envs', namespace: nsB });
      await core.replaceNamespacedResourceQuotaStatus({
        name: 'no-envs',
        namespace: nsB,
        body: { ...q, status: { hard: { [resource]: '0' }, used: { [resource]: '0' } } },
      });
      const r = await call(b, 'create_environment', { runtime: 'python' });
      expect(r.isError).toBe(true);
      expect(errorText(r)).toMatch(/the cluster refused the new environment: .*exceeded quota: no-envs/);
    } finally {
      await core.deleteNamespacedResourceQuota({ name: 'no-envs', namespace: nsB });
    }
  });

  it('waits for a namespace’s brand-new ResourceQuota to be counted instead of failing the create', {
    timeout: 60_000,
  }, async () => {
    const resource = 'count/waggleenvironments.waggle.dev';
    await core.createNamespacedResourceQuota({
      namespace: nsB,
      body: { metadata: { name: 'fresh' }, spec: { hard: { [resource]: '5' } } },
    });
    try {
      // Until its status is filled, quota admission refuses every create ("status unknown").
      const creating = call(b, 'create_environment', { runtime: 'python' });
      await new Promise((r) => setTimeout(r, 1_500));
      const q = await core.readNamespacedResourceQuota({ name: 'fresh', namespace: nsB });
      await core.replaceNamespacedResourceQuotaStatus({
        name: 'fresh',
        namespace: nsB,
        body: { ...q, status: { hard: { [resource]: '5' }, used: { [resource]: '0' } } },
      });
      const r = await creating;
      expect(r.isError, errorText(r)).toBeFalsy();
      await ok(b, 'destroy_environment', {
        environment_id: (r.structuredContent as { environment_id: string }).environment_id,
      });
    } finally {
      await core.deleteNamespacedResourceQuota({ name: 'fresh', namespace: nsB });
    }
  });

  it('fails create_environment with the scheduler reason when no node fits, leaving nothing', {
    timeout: 60_000,
  }, async () => {
    const r = await call(a, 'create_environment', { runtime: 'shell' });
    expect(r.isError).toBe(true);
    expect(errorText(r)).toMatch(
      /no node can run the environment right now: 0\/\d+ nodes are available: .*no shell runtime/,
    );
    await waitFor(
      async () =>
        (
          (await custom.listNamespacedCustomObject({ ...ENVIRONMENTS, namespace: nsA })) as {
            items: WaggleEnvironment[];
          }
        ).items,
      (items) => !items.some((e) => e.spec.runtime === 'shell'),
      'the unschedulable environment to be removed',
      { timeoutMs: 15_000 },
    );
  });
});
