// Writes (or with --check, verifies) the CRD YAML generated from the zod schemas.
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allCRDs, renderCRD } from '../src/index.ts';

const crdsDir = join(dirname(fileURLToPath(import.meta.url)), '..');
// The chart ships the same files in its crds/ directory (Helm installs them on first install).
const chartCrdsDir = join(crdsDir, '..', 'charts', 'waggle', 'crds');
const check = process.argv.includes('--check');
let drift = 0;

for (const [file, crd] of Object.entries(allCRDs())) {
  const want = renderCRD(crd);
  for (const [dir, shown] of [
    [crdsDir, `crds/${file}`],
    [chartCrdsDir, `charts/waggle/crds/${file}`],
  ] as const) {
    const path = join(dir, file);
    if (check) {
      const have = await readFile(path, 'utf8').catch(() => '');
      if (have !== want) {
        drift++;
        console.error(`${shown} is out of date with crds/src; run \`pnpm gen:crds\``);
      }
    } else {
      await writeFile(path, want);
      console.log(`wrote ${shown}`);
    }
  }
}
process.exit(drift ? 1 : 0);
