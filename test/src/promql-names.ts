/** PromQL words that look like metric names but are not. */
const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'and',
  'or',
  'unless',
  'offset',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression reads (enough of PromQL for dashboards): label matchers,
 * range and subquery selectors, grouping clauses, strings and function calls are dropped, and what
 * identifiers remain are metric names (histogram series with their _bucket/_sum/_count suffix).
 */
export function metricNamesOf(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""') // strings (label values, quantile labels)
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges, subqueries ($__rate_interval included)
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // label lists
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w:.$])[A-Za-z_:][\w:]*/g)) {
    const word = m[0];
    const calls = /^\s*\(/.test(stripped.slice((m.index ?? 0) + word.length)); // a function
    if (!calls && !KEYWORDS.has(word.toLowerCase())) names.add(word);
  }
  return [...names];
}
