import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { valueRows, valuesTable, withValuesTable } from './chart-values-doc.ts';

const chart = join(import.meta.dirname, '..', '..', 'charts', 'waggle');
const valuesYaml = readFileSync(join(chart, 'values.yaml'), 'utf8');

interface SchemaNode {
  $ref?: string;
  properties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
}
const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8')) as SchemaNode & {
  definitions?: Record<string, SchemaNode>;
};
const resolve = (n: SchemaNode | undefined): SchemaNode | undefined =>
  n?.$ref ? schema.definitions?.[n.$ref.replace('#/definitions/', '')] : n;

/** The schema node of a dotted values key, or undefined when the schema does not know it. */
function schemaOf(key: string): SchemaNode | undefined {
  let node: SchemaNode | undefined = schema;
  for (const part of key.split('.')) {
    node = resolve(node);
    const next: SchemaNode | undefined =
      node?.properties?.[part] ??
      (typeof node?.additionalProperties === 'object' ? node.additionalProperties : undefined);
    if (!next) return undefined;
    node = next;
  }
  return resolve(node);
}

describe('the chart values table', () => {
  it('in charts/waggle/README.md is the one values.yaml gives', () => {
    const readme = readFileSync(join(chart, 'README.md'), 'utf8');
    expect(
      withValuesTable(readme, valuesYaml) === readme,
      'charts/waggle/README.md: the values table is stale; run node test/scripts/chart-values-doc.ts',
    ).toBe(true);
  });

  it('describes every value, and values.schema.json knows every one', () => {
    const rows = valueRows(valuesYaml);
    expect(rows.length).toBeGreaterThan(100);
    expect(
      rows.filter((r) => !r.description).map((r) => r.key),
      'values without a comment above them in values.yaml',
    ).toEqual([]);
    expect(
      rows.filter((r) => !schemaOf(r.key)).map((r) => r.key),
      'values missing from values.schema.json',
    ).toEqual([]);
  });

  it('reads comments above a key, on its line, and above a map’s first key; flow maps are one value', () => {
    const rows = valueRows(
      [
        '# header of the file',
        '',
        '# first key',
        'a: 1',
        '# section b',
        'b:',
        '  # b.c, the first key of b',
        '  c: "x|y"',
        '  d: [1, 2] # d on its line',
        '  # e is a flow map: one row',
        '  e: { f: 1 }',
        '',
      ].join('\n'),
    );
    expect(rows).toEqual([
      { key: 'a', default: '1', description: 'first key' },
      { key: 'b', default: '', description: 'section b' },
      { key: 'b.c', default: '"x|y"', description: 'b.c, the first key of b' },
      { key: 'b.d', default: '[1,2]', description: 'd on its line' },
      { key: 'b.e', default: '{"f":1}', description: 'e is a flow map: one row' },
    ]);
    const table = valuesTable(rows).split('\n');
    // Columns padded to the widest cell (as Biome formats Markdown tables); `|` escaped.
    expect(table[1]).toBe('| value | default   | meaning                  |');
    expect(table[2]).toBe('| ----- | --------- | ------------------------ |');
    expect(table[5]).toBe('| `b.c` | `"x\\|y"`  | b.c, the first key of b  |');
  });

  it('fails when the README has no markers to put the table between', () => {
    expect(() => withValuesTable('# no table here\n', valuesYaml)).toThrow(/no values table markers/);
  });
});
