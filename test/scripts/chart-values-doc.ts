// Regenerates the values table in charts/waggle/README.md from the comments in values.yaml.
// `--check`: exit 1 when the README's table is stale (what the unit test checks too).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withValuesTable } from '../src/chart-values-doc.ts';

const chart = join(import.meta.dirname, '..', '..', 'charts', 'waggle');
const readmePath = join(chart, 'README.md');
const readme = readFileSync(readmePath, 'utf8');
const updated = withValuesTable(readme, readFileSync(join(chart, 'values.yaml'), 'utf8'));
if (process.argv.includes('--check')) {
  if (updated !== readme) {
    console.error(
      'charts/waggle/README.md: the values table is stale; run node test/scripts/chart-values-doc.ts',
    );
    process.exit(1);
  }
} else if (updated !== readme) {
  writeFileSync(readmePath, updated);
  console.log('charts/waggle/README.md: values table updated');
}
