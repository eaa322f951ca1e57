import { isMap, isPair, isScalar, isSeq, type Node, type Pair, parseDocument, type YAMLMap } from 'yaml';

/** One row of the chart's values table: a dotted key, its default as written, its description. */
export interface ValueRow {
  key: string;
  default: string;
  description: string;
}

export const TABLE_START =
  '<!-- values table: generated from values.yaml by `node test/scripts/chart-values-doc.ts`; do not edit -->';
export const TABLE_END = '<!-- end of values table -->';

/** A comment block as one line: `#` gone, lines joined; only the paragraph right above the key. */
const oneLine = (comment: string | null | undefined): string =>
  (comment ?? '')
    .split(/\n\s*\n/)
    .at(-1)
    ?.split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ') ?? '';

const isFlow = (n: unknown): boolean => (isMap(n) || isSeq(n)) && (n as { flow?: boolean }).flow === true;

/** The default as a short code span: the scalar as YAML writes it, collections as compact JSON. */
function defaultOf(node: unknown): string {
  if (isScalar(node)) {
    const v = node.value;
    return typeof v === 'string' ? JSON.stringify(v) : String(v);
  }
  const js = (node as Node | null)?.toJSON?.() ?? null;
  return JSON.stringify(js);
}

/**
 * The rows of values.yaml: every leaf (a scalar, an empty or flow-style collection, a list), and
 * every block map that carries a comment of its own (a section). A key's description is the
 * comment block right above it plus a comment at the end of its line.
 */
export function valueRows(valuesYaml: string): ValueRow[] {
  const doc = parseDocument(valuesYaml);
  if (doc.errors.length) throw new Error(`values.yaml does not parse: ${doc.errors[0]?.message}`);
  const rows: ValueRow[] = [];
  const walk = (map: YAMLMap, prefix: string) => {
    for (const [i, item] of map.items.entries()) {
      if (!isPair(item)) continue;
      const pair = item as Pair<Node, Node>;
      const key = `${prefix}${String((pair.key as { value?: unknown }).value)}`;
      const value = pair.value;
      // The parser hangs the comment above a map's first key on the map itself.
      const above = pair.key?.commentBefore ?? (i === 0 ? map.commentBefore : undefined);
      const description = [oneLine(above), oneLine(value?.comment)].filter(Boolean).join(' ');
      if (isMap(value) && !isFlow(value) && value.items.length > 0) {
        if (description) rows.push({ key, default: '', description });
        walk(value, `${key}.`);
      } else {
        rows.push({ key, default: defaultOf(value), description });
      }
    }
  };
  if (!isMap(doc.contents)) throw new Error('values.yaml is not a map');
  walk(doc.contents, '');
  return rows;
}

const cell = (s: string) => s.replaceAll('|', '\\|').replaceAll('<', '&lt;');

/** The Markdown table between the generated-table markers, columns padded as Biome formats them. */
export function valuesTable(rows: ValueRow[]): string {
  const cells = [
    ['value', 'default', 'meaning'],
    ...rows.map((r) => [
      `\`${r.key}\``,
      r.default ? `\`${r.default.replaceAll('|', '\\|')}\`` : '',
      cell(r.description),
    ]),
  ];
  const widths = [0, 1, 2].map((c) => Math.max(3, ...cells.map((row) => [...(row[c] ?? '')].length)));
  const line = (row: string[]) =>
    `| ${row.map((v, c) => v + ' '.repeat((widths[c] ?? 0) - [...v].length)).join(' | ')} |`;
  const [head, ...body] = cells;
  const lines = [line(head ?? []), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...body.map(line)];
  return `${TABLE_START}\n${lines.join('\n')}\n${TABLE_END}`;
}

/** README with its table replaced by the one values.yaml gives. */
export function withValuesTable(readme: string, valuesYaml: string): string {
  const start = readme.indexOf(TABLE_START);
  const end = readme.indexOf(TABLE_END);
  if (start < 0 || end < start) {
    throw new Error(`the chart README has no values table markers (${TABLE_START} … ${TABLE_END})`);
  }
  return readme.slice(0, start) + valuesTable(valueRows(valuesYaml)) + readme.slice(end + TABLE_END.length);
}
