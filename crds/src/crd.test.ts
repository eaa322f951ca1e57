import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { allCRDs, environmentCRD, nodeCRD, poolCRD } from './crd.ts';
import { renderCRD } from './render.ts';
import { toStructuralSchema } from './structural-schema.ts';

const crdsDir = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('generated CRD YAML', () => {
  it.each(Object.entries(allCRDs()))(
    'crds/%s matches the zod schemas (run `pnpm gen:crds` if not)',
    async (file, crd) => {
      const committed = await readFile(join(crdsDir, file), 'utf8');
      expect(committed).toBe(renderCRD(crd));
      const inChart = await readFile(join(crdsDir, '..', 'charts', 'waggle', 'crds', file), 'utf8');
      expect(inChart, `charts/waggle/crds/${file} is stale; run pnpm gen:crds`).toBe(renderCRD(crd));
    },
  );

  it.each(Object.entries(allCRDs()))('%s has no empty list the apiserver would drop', (_file, crd) => {
    // An empty list is stored as absent: a later server-side apply of the same file (Helm
    // installing the chart's crds/ after `kubectl apply`) then conflicts on it.
    const empty: string[] = [];
    const walk = (v: unknown, path: string) => {
      if (Array.isArray(v)) {
        if (v.length === 0) empty.push(path);
        for (const [i, x] of v.entries()) walk(x, `${path}[${i}]`);
      } else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
      }
    };
    walk(crd, '');
    expect(empty).toEqual([]);
  });
});

describe('CRD shape', () => {
  it('serves waggleenvironments as a namespaced resource with status subresource and columns', () => {
    const crd = environmentCRD();
    expect(crd.metadata.name).toBe('waggleenvironments.waggle.dev');
    expect(crd.spec.scope).toBe('Namespaced');
    expect(crd.spec.names.shortNames).toEqual(['wenv']);
    const v = crd.spec.versions[0];
    expect(v?.subresources.status).toEqual({});
    expect(v?.additionalPrinterColumns.map((c) => c.name)).toEqual([
      'Runtime',
      'Phase',
      'Node',
      'Expires',
      'Age',
      'Reason',
      'Message',
    ]);
  });

  it('serves wagglenodes cluster-scoped with Ready, Accel and VMs columns', () => {
    const crd = nodeCRD();
    expect(crd.spec.scope).toBe('Cluster');
    const cols = crd.spec.versions[0]?.additionalPrinterColumns.map((c) => c.name);
    expect(cols).toEqual(['Ready', 'Accel', 'VMs', 'Age', 'Endpoint']);
  });

  it('serves wagglepools namespaced with the scale subresource (HPA, kubectl scale) and columns', () => {
    const crd = poolCRD();
    expect(crd.spec.scope).toBe('Namespaced');
    expect(crd.spec.names.shortNames).toEqual(['wpool']);
    const v = crd.spec.versions[0];
    expect(v?.subresources).toEqual({
      status: {},
      scale: {
        specReplicasPath: '.spec.replicas',
        statusReplicasPath: '.status.replicas',
        labelSelectorPath: '.status.selector',
      },
    });
    expect(v?.additionalPrinterColumns.map((c) => c.name)).toEqual([
      'Runtime',
      'Desired',
      'Ready',
      'Booting',
      'Age',
      'Template',
    ]);
    // A template may change (its VMs are replaced): no immutability rule is inherited.
    expect(JSON.stringify(v?.schema)).not.toContain('oldSelf');
  });

  it('makes runtime immutable with a CEL transition rule', () => {
    const schema = environmentCRD().spec.versions[0]?.schema.openAPIV3Schema as {
      properties: { spec: { properties: { runtime: Record<string, unknown> } } };
    };
    expect(schema.properties.spec.properties.runtime['x-kubernetes-validations']).toEqual([
      { rule: 'self == oldSelf', message: expect.stringContaining('spec.runtime is immutable') },
    ]);
  });
});

describe('toStructuralSchema', () => {
  it('rejects unions, which structural schemas cannot express', () => {
    expect(() => toStructuralSchema(z.object({ a: z.union([z.string(), z.int()]) }))).toThrow(/\.a: "anyOf"/);
  });

  it('drops zod integer bounds and date-time regexes but keeps formats', () => {
    const s = toStructuralSchema(z.object({ n: z.int(), t: z.iso.datetime() }));
    expect(s).toEqual({
      type: 'object',
      properties: { n: { type: 'integer' }, t: { type: 'string', format: 'date-time' } },
      required: ['n', 't'],
    });
  });
});
