import type { PoolTemplate, WaggleEnvironment, WagglePool } from '@waggle/crds';
import { Egress, Runtime, VMOrigin } from '@waggle/node-agent/client';
import { describe, expect, it } from 'vitest';
import { createdFrom, matchingPool, poolMatches, templateHash, toVMSpec } from './template.ts';

const TEMPLATE = {
  runtime: 'python' as const,
  resources: { cpus: 1, memoryMiB: 512, diskMiB: 2048 },
  network: { egress: 'all' as const, allowDomains: ['pypi.org', 'files.pythonhosted.org'] },
};
const pool = (name: string, template: PoolTemplate = TEMPLATE, namespace = 'team-a') =>
  ({ metadata: { name, namespace }, spec: { template, replicas: 1 } }) as unknown as WagglePool;
const env = (spec: Record<string, unknown>, namespace = 'team-a') =>
  ({
    metadata: { name: 'e', namespace },
    spec: { idleTimeout: '30m', ...TEMPLATE, ...spec },
  }) as unknown as WaggleEnvironment;

describe('templateHash', () => {
  it('is 16 hex, stable, blind to the order of allowDomains, and changes with the template', () => {
    const h = templateHash(TEMPLATE);
    expect(h).toMatch(/^[0-9a-f]{16}$/);
    expect(templateHash(structuredClone(TEMPLATE))).toBe(h);
    expect(
      templateHash({
        ...TEMPLATE,
        network: { egress: 'all', allowDomains: ['files.pythonhosted.org', 'pypi.org'] },
      }),
    ).toBe(h);
    expect(templateHash({ ...TEMPLATE, resources: { ...TEMPLATE.resources, memoryMiB: 1024 } })).not.toBe(h);
    expect(templateHash({ ...TEMPLATE, runtime: 'node' })).not.toBe(h);
    expect(templateHash({ ...TEMPLATE, image: 'r.test/team/ds:1' })).not.toBe(h);
    // Pools without an image keep the hash they had before images existed.
    expect(h).toBe(templateHash({ ...TEMPLATE, image: undefined }));
  });
});

describe('pool matching', () => {
  it('matches an environment of the same namespace whose runtime, resources and network equal the template', () => {
    expect(poolMatches(env({}), pool('p'))).toBe(true);
    expect(poolMatches(env({}, 'team-b'), pool('p'))).toBe(false);
    expect(poolMatches(env({ resources: { cpus: 2, memoryMiB: 512, diskMiB: 2048 } }), pool('p'))).toBe(
      false,
    );
    expect(poolMatches(env({ network: { egress: 'all' } }), pool('p'))).toBe(false);
    expect(poolMatches(env({ runtime: 'node' }), pool('p'))).toBe(false);
    expect(poolMatches(env({ image: 'r.test/team/ds:1' }), pool('p'))).toBe(false);
    // A pool of an image serves environments of that image (a template's), and only those.
    const ds = pool('ds', { ...TEMPLATE, image: 'r.test/team/ds:1' });
    expect(poolMatches(env({ image: 'r.test/team/ds:1' }), ds)).toBe(true);
    expect(poolMatches(env({ image: 'r.test/team/ds:2' }), ds)).toBe(false);
    expect(poolMatches(env({}), ds)).toBe(false);
    // idleTimeout, displayName and the like are not part of a VM
    expect(poolMatches(env({ idleTimeout: '5m', displayName: 'x' }), pool('p'))).toBe(true);
  });

  it('treats no allowDomains and an empty list alike', () => {
    const open = { ...TEMPLATE, network: { egress: 'all' as const } };
    expect(poolMatches(env({ network: { egress: 'all', allowDomains: [] } }), pool('p', open))).toBe(true);
  });

  it('picks the first matching pool by name, skipping pools being deleted', () => {
    const deleting = pool('a');
    deleting.metadata.deletionTimestamp = '2026-12-02T10:00:00Z';
    expect(matchingPool(env({}), [pool('c'), deleting, pool('b')])).toBe('team-a/b');
    expect(matchingPool(env({}), [pool('b', TEMPLATE, 'team-b')])).toBeUndefined();
  });
});

describe('node-agent translation', () => {
  it('turns a template into the VMSpec of SetWarmPools', () => {
    expect(toVMSpec(TEMPLATE)).toEqual({
      vmId: '',
      runtime: Runtime.PYTHON,
      cpus: 1,
      memoryMib: 512,
      diskMib: 2048,
      egress: Egress.ALL,
      allowDomains: ['pypi.org', 'files.pythonhosted.org'],
      image: '',
    });
    expect(toVMSpec({ ...TEMPLATE, image: 'r.test/team/ds:1' }).image).toBe('r.test/team/ds:1');
  });

  it('reads status.createdFrom from the CreateVM response', () => {
    expect(createdFrom({ vm: { origin: VMOrigin.VM_ORIGIN_WARM } })).toBe('warm');
    expect(createdFrom({ vm: { origin: VMOrigin.VM_ORIGIN_RESTORED } })).toBe('restored');
    expect(createdFrom({ vm: { origin: VMOrigin.VM_ORIGIN_COLD } })).toBe('cold');
    expect(createdFrom({ vm: { origin: VMOrigin.VM_ORIGIN_UNSPECIFIED } })).toBeUndefined();
    expect(createdFrom({})).toBeUndefined();
  });
});
