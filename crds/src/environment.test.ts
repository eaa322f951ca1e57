import { describe, expect, it } from 'vitest';
import { environmentSpecSchema, waggleEnvironmentSchema } from './environment.ts';
import { RESOURCE_LIMITS } from './vocabulary.ts';

const env = (spec: Record<string, unknown>) => ({
  apiVersion: 'waggle.dev/v1alpha1',
  kind: 'WaggleEnvironment',
  metadata: { name: 'e1', namespace: 'default' },
  spec,
});

function issues(spec: Record<string, unknown>): string[] {
  const r = environmentSpecSchema.safeParse(spec);
  if (r.success) return [];
  return r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('WaggleEnvironment schema', () => {
  it('fills defaults like the apiserver does', () => {
    const parsed = waggleEnvironmentSchema.parse(env({ runtime: 'python' }));
    expect(parsed.spec).toEqual({
      runtime: 'python',
      resources: { cpus: 1, memoryMiB: 512, diskMiB: 2048 },
      idleTimeout: '30m',
      idleAction: 'Delete',
      network: { egress: 'all' },
    });
  });

  it('keeps explicit values', () => {
    const spec = environmentSpecSchema.parse({
      runtime: 'node',
      resources: { cpus: 2, memoryMiB: 1024, diskMiB: 4096 },
      idleTimeout: '5m',
      maxLifetime: '2h',
      network: { egress: 'none' },
      nodeName: 'node-a',
    });
    expect(spec.resources.cpus).toBe(2);
    expect(spec.maxLifetime).toBe('2h');
    expect(spec.network.egress).toBe('none');
  });

  it.each([
    [{ runtime: 'ruby' }, /^runtime: /],
    [{}, /^runtime: /],
    [{ runtime: 'python', resources: { memoryMiB: -1 } }, /^resources\.memoryMiB: /],
    [
      { runtime: 'python', resources: { memoryMiB: RESOURCE_LIMITS.memoryMiB.max + 1 } },
      /^resources\.memoryMiB: /,
    ],
    [{ runtime: 'python', resources: { cpus: 0 } }, /^resources\.cpus: /],
    [{ runtime: 'python', resources: { cpus: 1.5 } }, /^resources\.cpus: /],
    [{ runtime: 'python', resources: { cpus: 8, memoryMiB: 512 } }, /^resources\.memoryMiB: .*per cpu/],
    [{ runtime: 'python', idleTimeout: 'soon' }, /^idleTimeout: must be a duration/],
    [{ runtime: 'python', idleTimeout: '0s' }, /^idleTimeout: must be between/],
    [{ runtime: 'python', maxLifetime: '200h' }, /^maxLifetime: must be between/],
    [{ runtime: 'python', network: { egress: 'some' } }, /^network\.egress: /],
    [{ runtime: 'python', idleAction: 'Hibernate' }, /^idleAction: /],
    [{ runtime: 'python', nodeName: 'Bad_Name' }, /^nodeName: must be a WaggleNode name/],
  ])('rejects %j naming the field', (spec, message) => {
    const found = issues(spec);
    expect(found.length).toBeGreaterThan(0);
    expect(found.some((m) => message.test(m))).toBe(true);
  });
});
